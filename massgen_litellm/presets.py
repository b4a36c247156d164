"""Finding and loading presets: the shipped YAML files, then the user's directories, which override them by name."""

from __future__ import annotations

import functools
import os
import re
import stat
import time
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError

from .config import ContextPath, Preset
from .errors import MassGenInputError, describe_validation_error

PRESETS_DIR_ENV = "MASSGEN_PRESETS_DIR"

# A preset name becomes a file name: anything but a plain identifier could walk out of the presets directory.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@functools.cache
def shipped_presets_dir() -> Path:
    """Inside an installed wheel the presets sit in the package; in a source checkout, at the top of the repo."""
    packaged = Path(__file__).with_name("presets")
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "presets"


def is_valid_name(name: str) -> bool:
    """A letter or digit, then up to 63 letters, digits, `-` and `_`: a name that is safe as a file name."""
    return _NAME.fullmatch(name) is not None


class PresetStore:
    """Looks presets up by name; later directories win, so a user's `build.yaml` replaces the shipped one.

    The directories, in order: the shipped presets, each directory of `MASSGEN_PRESETS_DIR` (separated by the
    platform's path separator, `:` on Unix), then `extra_dirs`. They are looked at on every lookup, so a preset added
    or edited on disk is used by the next request; a file whose status (time, size, inode) has not changed since it
    was read, and had not changed for two seconds before, is not read again. A preset is `<name>.yaml` (or `.yml`; the
    `.yaml` file wins if a directory has both) with a valid name.
    """

    def __init__(
        self, extra_dirs: Sequence[str | os.PathLike[str]] = (), context_paths: Sequence[ContextPath] = ()
    ) -> None:
        self.extra_dirs = [Path(d) for d in extra_dirs]
        # Added to every preset loaded here: the context paths of the process that runs the team (--context-path).
        self.context_paths = list(context_paths)

    def directories(self) -> list[Path]:
        """The directories searched, lowest priority first; some may not exist."""
        return [Path(directory) for directory in self._directory_names()]

    def files(self) -> dict[str, Path]:
        """Every preset found, by name, each the file of the highest-priority directory that has it."""
        found: dict[str, Path] = {}
        for directory in self.directories():
            if not directory.is_dir():
                continue
            # name.yaml after name.yml, so that of the two the .yaml file wins (as _find finds it: first).
            for path in sorted(directory.glob("*.y*ml"), key=lambda p: (p.stem, p.suffix == ".yaml")):
                # Regular files only, as _find takes them: a directory or a dangling link named team.yaml is no preset.
                if path.suffix in (".yaml", ".yml") and is_valid_name(path.stem) and path.is_file():
                    found[path.stem] = path
        return found

    def names(self) -> list[str]:
        return sorted(self.files())

    def load(self, name: str) -> Preset:
        """The preset `name` (as in `massgen/<name>`), validated.

        Raises:
            MassGenInputError: the name is not letters, digits, `-` and `_`; no preset has it (the message lists
                the presets there are); or its file is unreadable or invalid (see `load_preset_file`).
        """
        if not is_valid_name(name):
            raise MassGenInputError(
                f"preset name {name!r} is not allowed: use letters, digits, '-' and '_' only, for example massgen/build"
            )
        found = self._find(name)
        if found is None:
            available = ", ".join(sorted(self.files())) or "none"
            raise MassGenInputError(
                f"unknown preset {name!r}. Available presets: {available}. "
                f"Add your own as {name}.yaml in a directory named by {PRESETS_DIR_ENV}."
            )
        preset = _load_unless_unchanged(*found)
        try:
            return preset.with_context_paths(self.context_paths)
        except ValidationError as exc:
            raise MassGenInputError(
                f"preset {name} with the context paths given: {describe_validation_error(exc, Preset, 'preset')}"
            ) from None

    def _find(self, name: str) -> tuple[str, os.stat_result] | None:
        """The file `files()` would give for `name`, and its status, found without listing every directory (this
        runs per request)."""
        for directory in reversed(self._directory_names()):
            # .yaml first: of name.yaml and name.yml the .yaml file wins (as in files()), and it is the usual one, so
            # most requests cost one stat.
            for suffix in (".yaml", ".yml"):
                path = os.path.join(directory, name + suffix)  # not pathlib: this is most of a request's set-up
                try:
                    status = os.stat(path)
                except (OSError, ValueError):
                    continue
                if stat.S_ISREG(status.st_mode):
                    return path, status
        return None

    def _directory_names(self) -> list[str]:
        return _directory_names(os.environ.get(PRESETS_DIR_ENV, ""), tuple(map(str, self.extra_dirs)))


@functools.lru_cache(maxsize=16)
def _directory_names(env: str, extra_dirs: tuple[str, ...]) -> list[str]:
    return [str(shipped_presets_dir()), *(p for p in env.split(os.pathsep) if p), *extra_dirs]


# A file's status as it was when it was last read, and the preset read from it.
_Status = tuple[int, int, int, int, int]
_loaded: dict[str, tuple[_Status, Preset]] = {}

# How long after a file's last change its status is trusted to tell a later change. A write stamps the file with the
# clock's time, in steps that may be as coarse as a few milliseconds (or seconds, on some file systems), so a second
# write of the same size within one step of the first leaves the status as it was. Read that recently changed, the
# file is read again next time; read once it is older than this, any later write stamps a newer time. (Git decides
# when an index entry is "racily clean" the same way.)
_SETTLED_NS = 2_000_000_000


def _load_unless_unchanged(path: str, status: os.stat_result) -> Preset:
    """The preset in `path`, read again unless its status is that of the last read and it had settled by then."""
    key = (status.st_mtime_ns, status.st_size, status.st_ino, status.st_dev, status.st_ctime_ns)
    cached = _loaded.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    preset = load_preset_file(Path(path))
    if time.time_ns() - max(status.st_mtime_ns, status.st_ctime_ns) >= _SETTLED_NS:
        if len(_loaded) >= 256:
            _loaded.clear()
        _loaded[path] = (key, preset)
    return preset


def load_preset_file(path: Path) -> Preset:
    """Read and validate one preset file (UTF-8 YAML, a mapping) as a `Preset`.

    Raises:
        MassGenInputError: the file cannot be read, is not UTF-8, is not valid YAML (the message gives the line and
            column), is not a mapping, or does not validate (the message gives each key path, and for an unknown key
            the keys allowed). Messages name the file by its name only, never its path.
    """
    # Messages name the file, not its path: they reach proxy clients, who have no business knowing server paths.
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MassGenInputError(f"preset file {name} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise MassGenInputError(f"preset file {name} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    return _parse(name, text)


# A preset is read on every request; parsing and validating it is most of a request's set-up. Keyed by the file's
# text, so an edited file is parsed again at once; a Preset is frozen, so requests may share one.
@functools.lru_cache(maxsize=64)
def _parse(name: str, text: str) -> Preset:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise MassGenInputError(f"preset file {name} is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise MassGenInputError(
            f"preset file {name} must be a YAML mapping with an 'agents' list, not {type(data).__name__}"
        )
    try:
        return Preset.model_validate(data)
    except ValidationError as exc:
        raise MassGenInputError(
            f"preset file {name} is invalid: {describe_validation_error(exc, Preset, 'preset')}"
        ) from None
