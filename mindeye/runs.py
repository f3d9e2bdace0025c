"""Training runs started from the app: each one a detached child process of ``python -m mindeye train``.

A run is a folder ``<runs root>/<name>/`` holding what training writes (``config.json``, ``metrics.jsonl``,
``last.pth``, ``best.pth``) and what the manager writes:

- ``run.json``    the command, pid, process start time, planned epochs, and ``"status": "cancelled"`` once cancelled;
- ``stdout.log`` / ``stderr.log``  the child's output;
- ``exit_code``   written by a small shell wrapper when the training process ends.

All state is on disk, so a page reload or an app restart finds every run as it is; a run whose process is gone
without an exit code (killed, machine restarted) is reported failed. Linux/macOS only (process groups).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from .atomic import atomic_save
from .bundle import PROJECT_ROOT
from .data.errors import DataError

RUNS_ROOT = "runs"  # the app's training runs, under work_root() ($MINDEYE_HOME, else the project folder)
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# flags the manager sets itself (or must not: no network, no resuming into another run's folder)
MANAGED_FLAGS = ("model_name", "out", "bundle", "data_path", "preset", "resume_from_ckpt", "wandb_log",
                 "wandb_project")
# the sh wrapper: run the command, then record its exit code atomically (survives the app that started it)
_WRAPPER = 'f="$1"; shift; "$@"; echo $? > "$f.tmp"; mv "$f.tmp" "$f"'


@dataclass
class RunStatus:
    name: str
    status: str  # running | finished | failed | cancelled | incomplete (started outside the app, not finished)
    epochs_done: int
    epochs_planned: int | None
    best_val_top1: float | None  # best over epochs of the mean of val_fwd_top1 and val_bwd_top1 (300-way)
    started: str  # local time, "YYYY-MM-DD HH:MM:SS", or "" when unknown
    steps: int = 0  # the last training step logged
    subject: int | None = None
    exit_code: int | None = None
    error: str = ""  # a failed run: why, with the end of its stderr
    pid: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def check_name(name) -> str:
    """``name`` if it is a valid run name (1-64 of A-Z a-z 0-9 _ -), else a DataError saying what is expected.
    No path separator or dot is allowed, so a run folder can never lie outside the runs folder."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise DataError(f"run name {name!r} is not allowed: expected 1-64 letters, digits, '_' or '-' "
                        "(no spaces, dots or slashes), e.g. 'demo_run_2'")
    return name


def pid_alive(pid: int, start: int | None = None) -> bool:
    """Whether ``pid`` is a live process (not a zombie) and, when ``start`` (its start time in clock ticks
    since boot, from /proc) is given, the very process that was started: pids are reused after a restart."""
    if Path("/proc/self/stat").exists():
        try:
            text = Path(f"/proc/{int(pid)}/stat").read_text()
        except OSError:
            return False
        fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
        if fields[0] in ("Z", "X"):
            return False
        return start is None or int(fields[19]) == int(start)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def proc_start_time(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (/proc/PID/stat field 22); None without /proc."""
    try:
        text = Path(f"/proc/{int(pid)}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2:].split()[19])


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_json(obj: dict, path: Path) -> None:
    atomic_save(obj, path, lambda o, p: Path(p).write_text(json.dumps(o, indent=1)))


def _tail(path: Path, n: int, max_bytes: int = 64_000) -> str:
    """The last ``n`` lines of a text file (reading at most its last ``max_bytes``); '' if there is none.
    Carriage-return progress bars keep only their last state."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    if size > max_bytes:
        lines = lines[1:]  # the first one was cut
    return "\n".join([line for line in lines if line.strip()][-n:])


def _parse_train_flags(argv: list[str]):
    """Parse ``argv`` as ``python -m mindeye train`` would; a DataError with argparse's message if it would fail."""
    from .cli import build_parser
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(["train", *argv])
    except SystemExit:
        msg = err.getvalue().strip().splitlines()
        raise DataError(f"invalid training flags: {msg[-1] if msg else ' '.join(argv)}") from None


def _train_flags() -> dict[str, argparse.Action]:
    """Every ``train`` subcommand flag, by option string (``--prior`` and ``--no-prior`` alike)."""
    from .cli import add_train_flags
    p = argparse.ArgumentParser(add_help=False)
    add_train_flags(p)
    return {opt: a for a in p._actions for opt in a.option_strings}


def flags_to_argv(values: dict) -> list[str]:
    """``{"num_epochs": 20, "prior": False, ...}`` -> ``["--num_epochs", "20", "--no-prior", ...]`` (None is left out)."""
    known = {a.dest: a for a in _train_flags().values()}
    argv = []
    for k, v in values.items():
        if k not in known:
            raise DataError(f"unknown training flag {k!r}; expected one of `python -m mindeye train`'s flags "
                            f"({', '.join(sorted(known))})")
        if v is None:
            continue
        if isinstance(known[k], argparse.BooleanOptionalAction):
            argv.append(f"--{k}" if v else f"--no-{k}")
        elif isinstance(v, (list, tuple)):
            argv += [f"--{k}", *map(str, v)]
        else:
            argv += [f"--{k}", str(v)]
    return argv


class MetricsReader:
    """metrics.jsonl rows, read incrementally (only the bytes appended since the last call; a half-written
    last line waits for the next call; a rewritten file is read again from the start)."""

    def __init__(self):
        self._cache: dict[Path, tuple[int, int, list]] = {}  # path -> (inode, bytes consumed, rows)
        self._lock = threading.Lock()

    def rows(self, path: Path) -> list[dict]:
        with self._lock:
            try:
                st = path.stat()
            except OSError:
                self._cache.pop(path, None)
                return []
            ino, offset, rows = self._cache.get(path, (st.st_ino, 0, []))
            if ino != st.st_ino or st.st_size < offset:  # replaced or truncated: a new run under that name
                offset, rows = 0, []
            if st.st_size > offset:
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read(st.st_size - offset)
                end = chunk.rfind(b"\n") + 1
                rows = rows + [r for r in map(self._parse, chunk[:end].splitlines()) if r is not None]
                offset += end
            self._cache[path] = (st.st_ino, offset, rows)
            return rows

    @staticmethod
    def _parse(line: bytes):
        try:
            r = json.loads(line)
        except ValueError:
            return None
        return r if isinstance(r, dict) else None


class RunManager:
    """Starts, watches, lists and cancels training runs in ``root`` for one bundle's dataset.

    ``env`` adds to the children's environment (e.g. ``OMP_NUM_THREADS``, ``MINDEYE_CACHE_DIR``)."""

    def __init__(self, root: Path | str = RUNS_ROOT, bundle: Path | str | None = None,
                 data_path: Path | str | None = None, env: dict | None = None, python: str = sys.executable,
                 cancel_grace_s: float = 5.0):
        from .bundle import under_work_root
        self.root = under_work_root(root).resolve()
        self.bundle = Path(bundle) if bundle else None
        self.data_path = Path(data_path) if data_path else None
        self.env = {k: str(v) for k, v in (env or {}).items()}
        self.python = python
        self.cancel_grace_s = cancel_grace_s
        self._start_lock = threading.Lock()
        self._metrics = MetricsReader()

    # ------------------------------------------------------------------------------------------ paths
    def path(self, name: str) -> Path:
        """The folder of run ``name`` (validated: always directly inside the runs folder)."""
        d = (self.root / check_name(name)).resolve()
        if d.parent != self.root:  # belt and braces: the name pattern already rules this out
            raise DataError(f"run name {name!r} would leave the runs folder {self.root}")
        return d

    def names(self) -> list[str]:
        """Every run folder's name (one holding run.json or config.json), newest first."""
        if not self.root.is_dir():
            return []
        found = []
        for d in self.root.iterdir():
            if d.is_dir() and NAME_RE.fullmatch(d.name) and ((d / "run.json").exists() or (d / "config.json").exists()):
                meta = _read_json(d / "run.json")
                found.append((meta.get("started_unix") or d.stat().st_mtime, d.name))
        return [n for _, n in sorted(found, reverse=True)]

    def free_name(self, base: str) -> str:
        """``base``, or ``base_2``, ``base_3``... whichever has no folder yet."""
        check_name(base)
        if not (self.root / base).exists():
            return base
        k = 2
        while (self.root / f"{base}_{k}").exists():
            k += 1
        return f"{base}_{k}"

    def subjects(self) -> list[int]:
        """Subjects of the dataset that have a subject file (the ones a run can train on)."""
        from .data import canonical
        if self.data_path is None:
            return []
        try:
            manifest = canonical.read_manifest(self.data_path)
        except DataError:
            return []
        return sorted(int(s) for s in manifest.get("subjects", {})
                      if canonical.subject_file(self.data_path, int(s)).exists())

    @staticmethod
    def preset_values(preset: str | None) -> dict:
        """Every training flag's value under ``preset`` (a key of ``mindeye.train.PRESETS``; None: the CLI's
        defaults), e.g. to fill a form."""
        import dataclasses

        from .train_config import PRESETS, TrainConfig
        values = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        if preset:
            if preset not in PRESETS:
                raise DataError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)} or none")
            values.update(PRESETS[preset])
        return values

    # ------------------------------------------------------------------------------------------ start
    def start(self, name: str, flags: dict | None = None, extra: str | list[str] = "",
              preset: str | None = None) -> RunStatus:
        """Start ``python -m mindeye train`` as run ``name``, detached (its own process group and session).

        ``flags``: training flags by TrainConfig name (the form's), over ``preset``'s values; ``extra``: more
        flags as on the command line (``"--hidden_dim 32 --no-use_image_aug"``), none of those the form or
        the manager set. Flags are checked by the CLI's own parser before anything starts. Refused when a run
        of that name is running, or its folder already holds a run (its checkpoints would be overwritten)."""
        from .train_config import PRESETS
        check_name(name)
        if preset and preset not in PRESETS:
            raise DataError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)} or none")
        bad = sorted(set(flags or {}) & set(MANAGED_FLAGS))
        if bad:
            raise DataError(f"flags {bad} are set by the run manager (the run's name, folder and dataset), not by hand")
        values = {k: v for k, v in PRESETS.get(preset, {}).items() if k not in MANAGED_FLAGS}
        values.update({k: v for k, v in (flags or {}).items() if v is not None})
        extra_argv = shlex.split(extra) if isinstance(extra, str) else list(extra)
        options, owned = _train_flags(), set(MANAGED_FLAGS) | set(flags or {})
        for tok in extra_argv:
            if not tok.startswith("-") or re.fullmatch(r"-\.?\d.*", tok):
                continue  # a value (negative numbers included)
            opt = tok.split("=", 1)[0]
            if opt not in options:  # also refuses argparse's abbreviations (--mod for --model_name)
                raise DataError(f"unknown training flag {opt!r} among the extra flags; write flags in full, as "
                                "`python -m mindeye train --help` lists them")
            if options[opt].dest in owned:
                raise DataError(f"--{options[opt].dest} cannot be given among the extra flags: "
                                + ("the form sets it" if options[opt].dest in (flags or {}) else "the run manager sets it"))
        argv = ["--model_name", name, "--out", str(self.root)]
        if self.bundle is not None:
            argv += ["--bundle", str(self.bundle)]
        if self.data_path is not None:
            argv += ["--data_path", str(self.data_path)]
        argv += flags_to_argv(values) + extra_argv
        args = _parse_train_flags(argv)
        if args.model_name != name or Path(args.out) != self.root:  # nothing above may have moved the run's folder
            raise DataError(f"the extra flags may not change the run's name or folder (got {args.model_name!r} in {args.out})")
        from .cli import train_config_from_args
        cfg = train_config_from_args(args, argv)
        if cfg.subj is None:  # the bundle's subject, as the trainer will resolve it
            from .bundle import DEMO_BUNDLE, Bundle
            cfg.subj = Bundle.load(self.bundle or DEMO_BUNDLE).subject
        subjects = self.subjects()
        if subjects and cfg.subj not in subjects:
            raise DataError(f"subject {cfg.subj} is not in the dataset {self.data_path} (it has subjects {subjects})")

        with self._start_lock:
            d = self.path(name)
            self.root.mkdir(parents=True, exist_ok=True)
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()  # an empty folder left by nothing: reuse the name
            try:
                d.mkdir()  # atomic: of two starters (threads or app processes), one wins
            except FileExistsError:
                st = self.status(name) if (d / "run.json").exists() or (d / "config.json").exists() else None
                if st is not None and st.status == "running":
                    raise DataError(f"a run named {name!r} is already running; cancel it first or pick another "
                                    "name") from None
                raise DataError(f"{d} already holds {'a ' + st.status if st else 'a'} run; starting again would "
                                f"overwrite its checkpoints: pick another name, e.g. {self.free_name(name)!r}") from None
            cmd = [self.python, "-m", "mindeye", "train", *argv]
            env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
            now = time.time()
            meta = {"name": name, "command": cmd, "preset": preset, "subject": cfg.subj,
                    "planned_epochs": cfg.num_epochs, "started_unix": now,
                    "started": datetime.fromtimestamp(now).strftime("%Y-%m-%d %H:%M:%S"), "status": "running"}
            _write_json(meta, d / "run.json")
            with open(d / "stdout.log", "wb") as out, open(d / "stderr.log", "wb") as err:
                proc = subprocess.Popen(["/bin/sh", "-c", _WRAPPER, "sh", str(d / "exit_code"), *cmd],
                                        cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=err, start_new_session=True)
            meta.update(pid=proc.pid, pgid=proc.pid, proc_start=proc_start_time(proc.pid))
            _write_json(meta, d / "run.json")
            # reap the wrapper when it ends, so it does not linger as a zombie of this process
            threading.Thread(target=proc.wait, daemon=True, name=f"run-{name}").start()
        return self.status(name)

    # ------------------------------------------------------------------------------------------ status
    def metrics(self, name: str) -> list[dict]:
        """The run's metrics.jsonl rows so far: per-step rows (``loss``, ``lr``) and per-epoch rows (``val_*``)."""
        return self._metrics.rows(self.path(name) / "metrics.jsonl")

    def log_tail(self, name: str, n: int = 40) -> str:
        """The last ``n`` lines the run printed; for a failed run, the end of its stderr too."""
        d = self.path(name)
        text = _tail(d / "stdout.log", n)
        st = self.status(name)
        if st.status == "failed" and st.error:
            text = (text + "\n\n" if text else "") + st.error
        return text

    def status(self, name: str) -> RunStatus:
        """Where run ``name`` stands, read from its folder (a dead process is detected, not trusted)."""
        d = self.path(name)
        if not d.is_dir():
            have = self.names()
            raise DataError(f"no run named {name!r} in {self.root}"
                            + (f" (runs: {', '.join(have[:10])}{'...' if len(have) > 10 else ''})" if have else
                               " (no runs yet)"))
        meta = _read_json(d / "run.json")
        config = _read_json(d / "config.json")
        rows = self.metrics(name)
        epochs = [r for r in rows if "val_fwd_top1" in r and "epoch" in r]
        done = max(int(r["epoch"]) for r in epochs) + 1 if epochs else 0
        planned = config.get("num_epochs") or meta.get("planned_epochs")
        best = max(((r["val_fwd_top1"] + r.get("val_bwd_top1", r["val_fwd_top1"])) / 2 for r in epochs), default=None)
        steps = max((int(r.get("step", 0)) for r in rows), default=0)
        started = meta.get("started") or (datetime.fromtimestamp((d / "config.json").stat().st_mtime)
                                          .strftime("%Y-%m-%d %H:%M:%S") if config else "")
        st = RunStatus(name=name, status="running", epochs_done=done, epochs_planned=planned,
                       best_val_top1=round(best, 4) if best is not None else None, started=started, steps=steps,
                       subject=meta.get("subject", config.get("subj")), pid=meta.get("pid"))
        if not meta:  # a run from the command line: no process of ours to ask
            st.status = "finished" if planned and done >= planned else "incomplete"
            return st
        code = self._exit_code(d)
        if meta.get("status") == "cancelled":
            st.status, st.exit_code = "cancelled", code
        elif code is None and meta.get("pid") and pid_alive(meta["pid"], meta.get("proc_start")):
            st.status = "running"
        else:
            code = code if code is not None else self._exit_code(d)  # it may have ended between the two looks
            st.exit_code = code
            if code == 0:
                st.status = "finished"
            else:
                st.status = "failed"
                why = (f"the training process exited with code {code}" if code is not None else
                       f"the training process (pid {meta.get('pid')}) is gone without an exit code: it was killed "
                       "or the machine restarted")
                tail = _tail(d / "stderr.log", 15)
                st.error = why + (f"; the end of its stderr:\n{tail}" if tail else "")
        return st

    @staticmethod
    def _exit_code(d: Path) -> int | None:
        try:
            return int((d / "exit_code").read_text().strip())
        except (OSError, ValueError):
            return None

    def list(self) -> list[RunStatus]:
        """Every run's status, newest first."""
        out = []
        for n in self.names():
            try:
                out.append(self.status(n))
            except DataError:
                continue  # removed while listing
        return out

    # ------------------------------------------------------------------------------------------ cancel
    def cancel(self, name: str) -> RunStatus:
        """Stop a running run: mark it cancelled, SIGTERM its process group, SIGKILL what is left after
        ``cancel_grace_s``. Checkpoints already written stay valid (they are written by atomic rename)."""
        st = self.status(name)
        if st.status != "running":
            raise DataError(f"run {name!r} is not running (it is {st.status}); there is nothing to cancel")
        d = self.path(name)
        meta = _read_json(d / "run.json")
        meta.update(status="cancelled", cancelled=datetime.now().strftime("%Y-%m-%d %H:%M:%S"))
        _write_json(meta, d / "run.json")
        pgid = int(meta.get("pgid") or meta["pid"])
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.time() + self.cancel_grace_s
        while time.time() < deadline and self._group_alive(pgid, meta):
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        return self.status(name)

    @staticmethod
    def _group_alive(pgid: int, meta: dict) -> bool:
        """Whether any live (non-zombie) process is left in the group."""
        proc = Path("/proc")
        if not proc.is_dir():
            try:
                os.killpg(pgid, 0)
                return True
            except (ProcessLookupError, PermissionError):
                return False
        for p in proc.iterdir():
            if not p.name.isdigit():
                continue
            try:
                text = (p / "stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
        return False
