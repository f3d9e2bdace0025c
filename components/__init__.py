"""One module per app tab: layout plus callbacks into mindeye.engine, nothing else."""
