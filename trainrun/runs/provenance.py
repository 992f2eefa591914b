"""What made a run, recorded at its start and checked when it resumes.

run.json's `provenance` holds:

- `environment`: trainrun, Keras, the backend library, NumPy and Python versions
  (read from the installed distributions, so no TensorFlow import is needed to
  compare them), the machine, the CPU model and the CPU flags that pick different
  numeric kernels (AVX2/FMA, AVX-512, AVX-VNNI, AMX), and the machine's GPUs;
- `config`: the hash of the resolved config (config.yaml without `fit.epochs`,
  which `resume --epochs` raises on purpose, and `name`);
- `data`: each data file (path, size, mtime, sha256) and each data folder (files,
  size, the newest mtime, a manifest digest of (relative path, size, mtime) and
  the sha256 of all contents);
- `code`: each module a config names by import path (callbacks, losses, builders,
  data factories) that is the user's own (not in the standard library or
  site-packages): its file, sha256, and a copy under the run's `code/`;
- `git`: the commit and dirty flag of the repository holding the config, if any.

`changes()` compares a run's record with the present; `trainrun resume` refuses
when anything differs. A file whose size and mtime match the record is not read
again; a large file (or folder) hashed once is remembered in a user cache keyed
by (path, size, mtime_ns), so a second run on it does not rehash it either.

No TensorFlow, no Keras: this runs before `resume` imports them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import machinery, metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from trainrun.errors import RunDirError
from trainrun.runs.files import write_atomic

if TYPE_CHECKING:
    from trainrun.config import LoadedConfig
    from trainrun.runs.record import RunRecord

CHUNK = 1 << 20
CACHED_FROM = 1 << 20  # files smaller than this are hashed every time (it costs nothing)
CACHE_ENTRIES = 2000
NUMERIC_FLAGS = ("avx2", "fma", "avx512", "avx_vnni", "amx")
CODE_DIR = "code"


# ---------------------------------------------------------------- environment


def installed(*distributions: str) -> str | None:
    """The installed version of the first of `distributions` present, or None."""
    for name in distributions:
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(name)
    return None


def config_backend(config_text: str) -> str:
    """The Keras backend a run's config.yaml names (`backend:`; tensorflow by default):
    trainrun sets Keras to it, whatever $KERAS_BACKEND or keras.json say."""
    with contextlib.suppress(yaml.YAMLError, AttributeError):
        return str((yaml.safe_load(config_text) or {}).get("backend") or "tensorflow")
    return "tensorflow"


_BACKEND_DISTRIBUTIONS = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tf-nightly"),
    "jax": ("jax",),
    "torch": ("torch",),
}


def versions(name: str) -> dict[str, str | None]:
    """trainrun, Keras, the library of backend `name`, NumPy and Python versions."""
    import trainrun

    return {
        "trainrun": trainrun.__version__,
        "keras": installed("keras"),
        name: installed(*_BACKEND_DISTRIBUTIONS.get(name, (name,))),
        "numpy": installed("numpy"),
        "python": platform.python_version(),
    }


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (Linux); empty elsewhere."""
    fields: dict[str, str] = {}
    with (
        contextlib.suppress(OSError),
        open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f,
    ):
        for line in f:
            if not line.strip():
                break  # the first processor is enough: the flags are the machine's
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def gpus() -> list[str]:
    """The machine's NVIDIA GPUs by model, read from the driver's files (no CUDA, no TF)."""
    found = []
    root = Path("/proc/driver/nvidia/gpus")
    with contextlib.suppress(OSError):
        for gpu in sorted(root.iterdir()):
            with contextlib.suppress(OSError):
                for line in (gpu / "information").read_text().splitlines():
                    if line.startswith("Model:"):
                        found.append(line.partition(":")[2].strip())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and found:
        found.append(f"CUDA_VISIBLE_DEVICES={visible}")
    return found


def environment(backend: str) -> dict[str, Any]:
    cpu = _cpuinfo()
    flags = sorted(f for f in cpu.get("flags", "").split() if f.startswith(NUMERIC_FLAGS))
    return {
        "versions": versions(backend),
        "backend": backend,
        "platform": f"{platform.system()}-{platform.release()}",  # platform.platform() reads the interpreter's binary: 7 ms
        "machine": platform.machine(),
        "cpu": cpu.get("model name") or platform.processor() or None,
        "cpu_flags": flags,
        "gpus": gpus(),
    }


# ---------------------------------------------------------------- config


def config_hash(config_text: str) -> str:
    """sha256 of the resolved config, without what does not change the result: fit.epochs
    (resume --epochs raises it) and the name (it only names the run directory)."""
    data = yaml.load(config_text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "name"}
        if isinstance(data.get("fit"), dict):
            data["fit"] = {k: v for k, v in data["fit"].items() if k != "epochs"}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- git


def git_started(folder: Path) -> subprocess.Popen | None:
    """`git status` of the repository holding `folder`, started now and read by `git_info`:
    one process, running while the data files are hashed."""
    try:
        return subprocess.Popen(
            [
                "git",
                "-C",
                str(folder),
                "status",
                "--porcelain=v2",
                "--branch",
                "--untracked-files=no",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
    except OSError:  # no git on this machine
        return None


def git_info(started: subprocess.Popen | None) -> dict[str, Any] | None:
    """The commit and dirty flag (tracked files changed) of the config's repository, if any."""
    if started is None:
        return None
    try:
        out, _ = started.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        started.kill()
        started.communicate()
        return None
    if started.returncode != 0:
        return None  # not in a repository
    lines = out.splitlines()
    commit = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), None)
    if not commit or commit == "(initial)":
        return None
    return {"commit": commit, "dirty": any(not line.startswith("#") for line in lines)}


# ---------------------------------------------------------------- hashing


def _cache_file() -> Path:
    root = os.environ.get("TRAINRUN_CACHE_DIR")
    if root:
        return Path(root) / "file-hashes.json"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trainrun" / "file-hashes.json"


class HashCache:
    """sha256 of large files and folders by (path, size, mtime_ns), kept between runs.

    A cache only: unreadable means empty, unwritable means not kept; two processes
    writing at once lose an entry at worst (it is hashed again).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or _cache_file()
        self._entries: dict[str, str] | None = None
        self._changed = False
        self.hashed: list[str] = []  # what this process read in full, for tests and the bench

    def _load(self) -> dict[str, str]:
        if self._entries is None:
            try:
                entries = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                entries = {}
            self._entries = entries if isinstance(entries, dict) else {}
        return self._entries

    def get(self, key: str) -> str | None:
        value = self._load().get(key)
        return value if isinstance(value, str) else None

    def put(self, key: str, digest: str) -> None:
        entries = self._load()
        entries.pop(key, None)
        entries[key] = digest  # newest last; the oldest go first
        while len(entries) > CACHE_ENTRIES:
            entries.pop(next(iter(entries)))
        self._changed = True

    def save(self) -> None:
        if not self._changed:
            return
        with contextlib.suppress(OSError):  # a cache that cannot be kept costs a rehash later
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(self._entries))
        self._changed = False


def _sha256_file(path: Path, digest: Any = None) -> Any:
    digest = digest or hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest


def _mtime(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="seconds")


def _walk(folder: Path) -> Iterator[tuple[str, Path, os.stat_result]]:
    """Every file under `folder` (links followed, as Keras' readers do), sorted."""
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            with contextlib.suppress(OSError):
                yield path.relative_to(folder).as_posix(), path, path.stat()


def file_entry(path: Path, prior: dict[str, Any] | None, cache: HashCache) -> dict[str, Any]:
    """A data file's (or folder's) record; its content is read only when its size and
    mtime match neither `prior` (the run's record) nor the cache."""
    prior = prior or {}
    try:
        st = path.stat()
    except OSError:
        return {"path": str(path), "missing": True}
    if path.is_dir():
        return _folder_entry(path, prior, cache)
    entry: dict[str, Any] = {
        "path": str(path),
        "size": st.st_size,
        "mtime": _mtime(st.st_mtime_ns),
        "mtime_ns": st.st_mtime_ns,
    }
    key = f"{path}\0{st.st_size}\0{st.st_mtime_ns}"
    if (
        prior.get("size") == st.st_size
        and prior.get("mtime_ns") == st.st_mtime_ns
        and "sha256" in prior
    ):
        entry["sha256"] = prior["sha256"]
    elif st.st_size >= CACHED_FROM and cache.get(key):
        entry["sha256"] = cache.get(key)
    else:
        entry["sha256"] = "sha256:" + _sha256_file(path).hexdigest()
        cache.hashed.append(str(path))
        if st.st_size >= CACHED_FROM:
            cache.put(key, entry["sha256"])
    return entry


def _folder_entry(folder: Path, prior: dict[str, Any], cache: HashCache) -> dict[str, Any]:
    """A folder: a manifest of (relative path, size, mtime_ns) decides whether its
    contents are read again; the content hash covers every file's path and bytes."""
    files = list(_walk(folder))
    manifest = hashlib.sha256()
    for rel, _, st in files:
        manifest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    manifest_digest = "sha256:" + manifest.hexdigest()
    newest = max((st.st_mtime_ns for _, _, st in files), default=0)
    entry: dict[str, Any] = {
        "path": str(folder),
        "folder": True,
        "files": len(files),
        "size": sum(st.st_size for _, _, st in files),
        "mtime": _mtime(newest) if files else None,
        "manifest": manifest_digest,
    }
    key = f"{folder}\0dir\0{manifest_digest}"
    if prior.get("manifest") == manifest_digest and "sha256" in prior:
        entry["sha256"] = prior["sha256"]
    elif cache.get(key):
        entry["sha256"] = cache.get(key)
    else:
        content = hashlib.sha256()
        for rel, path, _ in files:
            content.update(f"{rel}\0".encode())
            _sha256_file(path, content)
        entry["sha256"] = "sha256:" + content.hexdigest()
        cache.hashed.append(str(folder))
        cache.put(key, entry["sha256"])
    return entry


def data_files(loaded: LoadedConfig, mnist: Path | None = None) -> dict[str, Path]:
    """The files and folders a config reads, by the key that names them."""
    cfg = loaded.config
    data = cfg.data
    found: dict[str, Path] = {}

    def add(key: str, value: Any) -> None:
        if isinstance(value, str) and value:
            found[key] = loaded.resolve_path(value)
        elif isinstance(value, dict):  # x/y by model input name
            for name, item in value.items():
                if isinstance(item, str) and item.endswith(".npy"):
                    add(f"{key}.{name}", item)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                add(f"{key}.{i}", item)

    if data.source == "mnist" and mnist is not None:
        found["data.mnist"] = mnist
    for split in ("train", "validation", "test"):
        given = getattr(data, split)
        if given is None:
            continue
        add(f"data.{split}.path", given.path)
        add(f"data.{split}.csv", given.csv)
        add(f"data.{split}.tfrecord", given.tfrecord)
        for key in ("x", "y", "sample_weight"):
            value = getattr(given, key)
            if isinstance(value, str) and value.endswith(".npy") or isinstance(value, dict):
                add(f"data.{split}.{key}", value)
    folder = getattr(data, data.source, None) if data.source.endswith("_folder") else None
    if folder is not None:
        for key in ("directory", "validation_directory", "test_directory"):
            add(f"data.{data.source}.{key}", getattr(folder, key))
    add("model.path", cfg.model.path)
    add("model.initial_weights", cfg.model.initial_weights)
    return found


def data_entries(
    files: dict[str, Path], prior: dict[str, Any] | None, cache: HashCache
) -> dict[str, dict[str, Any]]:
    prior = prior or {}
    out = {
        key: file_entry(path, _prior(prior.get(key), path), cache) for key, path in files.items()
    }
    cache.save()
    return out


def _prior(entry: Any, path: Path) -> dict[str, Any] | None:
    return entry if isinstance(entry, dict) and entry.get("path") == str(path) else None


# ---------------------------------------------------------------- code


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def module_names(config: dict[str, Any]) -> list[str]:
    """The modules of every `module:attr` in a config (all sections), in order, once each."""
    from trainrun.custom import IMPORT_PATH

    names = [s.partition(":")[0] for s in _strings(config) if IMPORT_PATH.match(s)]
    return list(dict.fromkeys(names))


def _not_user_code() -> list[Path]:
    paths = {sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths.add(str(Path(__file__).resolve().parents[1]))  # trainrun itself
    return [Path(p).resolve() for p in paths if p]


def find_module(name: str, base_dir: Path | None) -> Path | None:
    """The source file of module `name` as importing it would find it, the config's
    folder first, without importing it (nor its packages); already imported: its file."""
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__file__", None):
        return Path(module.__file__).resolve()
    search = [str(base_dir), *sys.path] if base_dir else list(sys.path)
    spec = None
    for part in name.split("."):
        spec = machinery.PathFinder.find_spec(part, search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    if spec is None or not spec.origin or not spec.has_location:
        return None
    return Path(spec.origin).resolve()


def _user_file(path: Path, excluded: list[Path]) -> bool:
    return path.suffix == ".py" and not any(path.is_relative_to(p) for p in excluded)


def _with_packages(name: str) -> list[str]:
    """'a.b.c' -> ['a', 'a.b', 'a.b.c']: a copy of a.b.c imports only with its packages."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def code_entries(names: list[str], base_dir: Path | None) -> dict[str, dict[str, Any]]:
    """{module: {file, sha256}} for each named module that is the user's own code."""
    excluded = _not_user_code()
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        for module in _with_packages(name):
            if module in out:
                continue
            path = find_module(module, base_dir)
            if path is None or not _user_file(path, excluded):
                continue
            try:
                digest = "sha256:" + _sha256_file(path).hexdigest()
            except OSError:
                continue
            out[module] = {"file": str(path), "sha256": digest, "copy": _copy_name(module, path)}
    return out


def _copy_name(module: str, path: Path) -> str:
    """Where the copy goes under the run directory: code/a/b.py, code/a/__init__.py."""
    rel = Path(*module.split("."))
    rel = rel / "__init__.py" if path.name == "__init__.py" else rel.with_suffix(".py")
    return f"{CODE_DIR}/{rel.as_posix()}"


def copy_code(run_path: Path, code: dict[str, dict[str, Any]]) -> None:
    for entry in code.values():
        target = run_path / entry["copy"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(entry["file"], target)


# ---------------------------------------------------------------- record / compare


def collect(loaded: LoadedConfig, config_text: str, *, mnist: Path | None = None) -> dict[str, Any]:
    """The provenance of a run that starts from `loaded` (config.yaml's text given)."""
    started = time.perf_counter()
    git = git_started(Path(loaded.file).resolve().parent)
    cache = HashCache()
    found = {
        "environment": environment(loaded.config.backend),
        "config": {"sha256": config_hash(config_text)},
        "data": data_entries(data_files(loaded, mnist), None, cache),
        "code": code_entries(module_names(loaded.config.model_dump(mode="json")), loaded.base_dir),
        "base_dir": str(loaded.base_dir),
        "git": git_info(git),
    }
    found["seconds"] = round(time.perf_counter() - started, 4)  # what recording cost
    return found


@dataclass(frozen=True)
class Change:
    """One thing that differs between a run's record and the present."""

    what: str
    then: str
    now: str

    def to_json(self) -> dict[str, str]:
        return {"what": self.what, "then": self.then, "now": self.now}


class ProvenanceChanged(RunDirError):
    """What made a run differs now from what its record says."""

    def __init__(self, message: str, changes: list[Change]) -> None:
        super().__init__(message)
        self.changes = changes


def short(value: Any) -> str:
    """A value for a table cell: hashes cut to 12 hex digits, lists joined."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return " ".join(map(str, value)) or "(none)"
    text = str(value)
    return text[:19] if text.startswith("sha256:") else text


def _environment_changes(then: dict[str, Any], now: dict[str, Any]) -> list[Change]:
    changes = []
    for name in sorted({*then.get("versions", {}), *now.get("versions", {})}):
        a, b = then.get("versions", {}).get(name), now["versions"].get(name)
        if a != b:
            changes.append(Change(name, short(a), short(b)))
    for key in ("backend", "machine", "cpu", "cpu_flags", "gpus"):
        a, b = then.get(key), now.get(key)
        if key not in then:
            continue  # an older record: not recorded, not compared
        if isinstance(a, list) and isinstance(b, list) and a != b:
            gone = sorted(set(a) - set(b))
            came = sorted(set(b) - set(a))
            changes.append(Change(key, short(gone or a), short(came or "(none)")))
        elif a != b:
            changes.append(Change(key, short(a), short(b)))
    return changes


def _file_text(entry: dict[str, Any]) -> str:
    if entry.get("missing"):
        return "missing"
    if entry.get("folder"):
        return f"{entry.get('files')} files, {short(entry.get('sha256'))}"
    return f"{entry.get('size')} B, {short(entry.get('sha256'))}"


def changes(run_path: Path, record: RunRecord, config_text: str) -> list[Change]:
    """What differs between the run's recorded provenance and the present (empty: nothing,
    or the run has no record of it). Data files are read only where size or mtime moved."""
    prov = record.provenance
    if not prov:
        return []
    found: list[Change] = []
    env = prov.get("environment")
    if isinstance(env, dict):
        found += _environment_changes(env, environment(config_backend(config_text)))
    recorded = (prov.get("config") or {}).get("sha256")
    present = config_hash(config_text)
    if recorded and recorded != present:
        found.append(Change("config.yaml", short(recorded), short(present)))
    data = prov.get("data") or {}
    if isinstance(data, dict) and data:
        cache = HashCache()
        files = {k: Path(v["path"]) for k, v in data.items() if isinstance(v, dict) and "path" in v}
        now = data_entries(files, data, cache)
        for key, then in data.items():
            entry = now.get(key)
            if entry is not None and (
                entry.get("sha256") != then.get("sha256")
                or bool(entry.get("missing")) != bool(then.get("missing"))
            ):
                found.append(
                    Change(
                        f"{key} ({Path(then['path']).name})", _file_text(then), _file_text(entry)
                    )
                )
    code = prov.get("code") or {}
    if isinstance(code, dict) and code:
        base_dir = prov.get("base_dir")
        now_code = code_entries(list(code), Path(base_dir) if base_dir else None)
        for module, then in code.items():
            entry = now_code.get(module)
            if entry is None:
                found.append(Change(f"code {module}", short(then.get("sha256")), "not found"))
            elif entry["file"] != then.get("file"):
                found.append(Change(f"code {module}", then.get("file", "-"), entry["file"]))
            elif entry["sha256"] != then.get("sha256"):
                found.append(
                    Change(
                        f"code {module} ({Path(entry['file']).name})",
                        short(then.get("sha256")),
                        short(entry["sha256"]),
                    )
                )
    return found


def check_unchanged(
    run_path: Path, record: RunRecord, config_file: Path, *, allow: bool
) -> list[Change]:
    """`trainrun resume`'s check: the changes, or ProvenanceChanged unless `allow`."""
    try:
        text = config_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{config_file} is unreadable: {exc}") from None
    found = changes(run_path, record, text)
    if found and not allow:
        raise ProvenanceChanged(
            f"run {run_path.name} was trained with something that has changed since "
            f"({len(found)} above): a resume would no longer end bitwise equal to the "
            f"uninterrupted run; resume anyway with trainrun resume {run_path} --allow-changed",
            found,
        )
    return found
