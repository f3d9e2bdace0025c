import subprocess
import sys

from mindeye.cli import main


def test_simulate_rejects_unsupported_subject(capsys):
    try:
        main(["simulate", "--subj", "3", "--out", "x"])
    except SystemExit as e:
        assert e.code == 2
    assert "invalid choice: 3" in capsys.readouterr().err


def test_convert_reports_data_errors(tmp_path, capsys):
    assert main(["convert", "--layout", "v1", "--data_path", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "mindeye", "simulate", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--n_train" in out.stdout and "--seed" in out.stdout


def test_simulate_prints_oracle_and_noise_ceiling(tmp_path, capsys):
    assert main(["simulate", "--subj", "1", "--out", str(tmp_path), "--n_train", "60", "--n_test", "40",
                 "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "oracle 40-way top-1" in out and "single trial" in out and "median noise ceiling" in out
