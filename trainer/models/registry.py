"""`python -m trainer registry list|show|promote|rollback`: the model registry in the models bucket.

Why an index updated by compare-and-swap: two people (or CI jobs) promoting at the same moment must not lose
each other's change. Every change re-reads index.json, applies itself (re-checking the quality gate against the
champion it now sees) and writes only if nobody wrote in between (flock + rename locally, generation
preconditions on GCS); otherwise it starts again. Version directories are immutable once registered.
Why the promoter checks the index it changes: with a signer, every change is signed, so a change built on an index
someone else wrote (unsigned, another key's, or an older signed one written back) would sign what they wrote: their
champion, servable. The registry refuses to build on such an index and `registry restore` puts back the newest index
the promoter signed (its copy under registry/history/, exact bytes, so no key is needed to restore).
Layout and record fields: docs/CONTRACTS.md ("Model registry").
"""

from __future__ import annotations

import json
import math
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import storage
from contracts.index_verification import IndexRefused, IndexVerifier, NotFound, PublicKeyError
from contracts.layout import (
    CANDIDATE,
    CHAMPION,
    REGISTRY_HISTORY,
    REGISTRY_INDEX,
    REGISTRY_VERSIONS,
    ModelFiles,
    history_name,
    version_dir,
)
from contracts.registry_index import (
    RegistryIndex,
    RegistryIndexError,
    UnknownReference,
    VersionRecord,
    empty_index,
    index_sequence,
    parse_index,
)
from trainer.clock import utc_now
from trainer.errors import GateRefused, ModelDirError, RegistryError
from trainer.models.gate import IDENTICAL, REFUSE
from trainer.models.gate_sets import PairedGate, read_report
from trainer.models.index_signing import Signer, signer_for, write_signature
from trainer.models.model_dir import verify_digests

__all__ = [
    "CANDIDATE",
    "CHAMPION",
    "REGISTRY_VERSIONS",
    "GateRefused",
    "ModelRegistry",
    "RegistryError",
    "register_version",
]
SOURCES = ("custom", "automl")


class ForeignIndex(RegistryError):
    """The index in place is not the newest the promoter wrote; `detail` says how, the message adds the fix."""

    def __init__(self, detail: str, fix: str):
        super().__init__(f"{detail}. {fix}")
        self.detail = detail


T = TypeVar("T")


def new_version_id() -> str:
    """Sortable by time, unique without coordination: v20261126-104114-3f9a."""
    return f"v{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


@dataclass
class ModelRegistry:
    root: str  # the models bucket (local dir or gs://)
    accuracy_floor: float = 0.85
    regression_tolerance: float = 0.005
    max_attempts: int = 10
    signer: Signer | None = None  # signs every index written (trainer/models/index_signing.py); None: unsigned
    # the paired gate on pinned data (trainer/models/gate_sets.py): (registry, candidate, champion, index) -> report
    paired_gate: Callable | None = None
    _verifier: IndexVerifier | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings) -> ModelRegistry:
        return cls(
            settings.models_bucket,
            settings.registry.accuracy_floor,
            settings.registry.regression_tolerance,
            signer=signer_for(settings),
            paired_gate=PairedGate(settings) if settings.registry.paired_gate else None,
        )

    @property
    def index_uri(self) -> str:
        return storage.join(self.root, REGISTRY_INDEX)

    def version_uri(self, version: str) -> str:
        return storage.join(self.root, version_dir(version))

    # ---- reading ----------------------------------------------------------------------------------------------

    def read_index(self) -> RegistryIndex:
        data = storage.read_versioned(self.index_uri).data
        return _parse_index(data, self.index_uri) if data else empty_index(self.index_uri)

    def resolve(self, ref: str, index: RegistryIndex | None = None) -> str:
        """An alias or a version id -> the version id (contracts.registry_index: an alias first)."""
        index = self.read_index() if index is None else index
        try:
            return index.resolve(ref)
        except UnknownReference as exc:
            aliases = ", ".join(exc.aliases) or "none yet"
            raise RegistryError(
                f"'{ref}' is neither a registered version nor an alias (aliases: {aliases}); "
                "see `python -m trainer registry list`"
            ) from None
        except RegistryIndexError as exc:
            raise RegistryError(str(exc)) from None

    def gate_report(self, candidate: str, champion: str | None) -> dict | None:
        """The paired gate's JSON report of `candidate` against `champion`, None if they were never compared."""
        return read_report(self.root, candidate, champion) if champion else None

    # ---- the promoter's own index: checked before a change, kept after one -------------------------------------

    def _verifier_of_signer(self) -> IndexVerifier:
        if self._verifier is None:
            assert self.signer is not None
            try:
                self._verifier = IndexVerifier.from_pem(self.signer.public_key_pem(), "the promoter's signing key")
            except PublicKeyError as exc:
                raise RegistryError(str(exc)) from None
        return self._verifier

    def _read_under_root(self, name: str) -> bytes:
        try:
            return storage.read_bytes(storage.join(self.root, name))
        except storage.NotFound:
            raise NotFound(name) from None

    def _signed_sequence(self, data: bytes) -> int:
        """The sequence of `data` if the promoter's key signed it; IndexRefused naming the reason otherwise."""
        self._verifier_of_signer().verify(data, self.root, self._read_under_root)
        try:
            return index_sequence(json.loads(data), self.index_uri)
        except RegistryIndexError as exc:  # its message names the index already
            raise IndexRefused(str(exc), "malformed") from None
        except (ValueError, AttributeError) as exc:
            raise IndexRefused(f"{self.index_uri}: not a JSON object ({exc})", "malformed") from None

    def _kept_sequences(self) -> list[int]:
        """The sequences of the kept copies under registry/history/ (by name; a name that is no sequence is skipped)."""
        names = (uri.rsplit("/", 1)[-1].removesuffix(".json") for uri in storage.list_uris(self._history_uri))
        return sorted(int(name) for name in names if name.isdigit())

    @property
    def _history_uri(self) -> str:
        return storage.join(self.root, REGISTRY_HISTORY)

    def _kept_copy(self, sequence: int) -> bytes | None:
        """The promoter's copy of the index it wrote with `sequence`, if there is one it signed."""
        try:
            data = self._read_under_root(history_name(sequence))
            return data if self._signed_sequence(data) == sequence else None
        except (NotFound, IndexRefused):
            return None

    def _check_base(self, data: bytes | None) -> None:
        """ForeignIndex unless `data` is the newest index the promoter wrote (or there is none yet)."""
        if data is None:
            kept = self._kept_sequences()
            if kept:
                raise ForeignIndex(
                    f"{self.index_uri} is gone, but the promoter wrote {len(kept)} index(es) before",
                    "A new one would forget every registered version. Nothing was written; put the newest back "
                    "with `python -m trainer registry restore`",
                )
            return
        try:
            sequence = self._signed_sequence(data)
            if self._kept_copy(sequence + 1) is not None:
                raise IndexRefused(
                    f"it has sequence {sequence}, but the promoter already wrote sequence {sequence + 1} "
                    f"({storage.join(self.root, history_name(sequence + 1))}): an older index written back",
                    "replayed",
                )
        except IndexRefused as exc:
            raise ForeignIndex(
                f"{self.index_uri} is not the index the promoter last wrote ({exc.reason}: {exc})",
                "Someone else wrote it, and signing a change on top of it would make what it names servable. "
                "Nothing was written; see what it names with `python -m trainer registry list`, then put back the "
                "promoter's newest index with `python -m trainer registry restore`",
            ) from None

    # ---- changing, by compare-and-swap ---------------------------------------------------------------------------

    def _update(self, change: Callable[[RegistryIndex], tuple[RegistryIndex, T]], *, check_base: bool = True) -> T:
        """Apply `change` to the newest index and write what it returns unless someone else wrote first; retry.
        With a signer the index changed must be the promoter's own (`check_base`), and a copy of the new one is
        kept under registry/history/ once it is in place."""
        for attempt in range(self.max_attempts):
            current = storage.read_versioned(self.index_uri)
            if self.signer is not None and check_base:
                self._check_base(current.data)
            index = _parse_index(current.data, self.index_uri) if current.data else empty_index(self.index_uri)
            index, result = change(index)
            index = index.with_next_sequence()  # signed with the rest: an older index cannot be replayed
            data = json.dumps(index.to_json(), indent=2, sort_keys=True).encode()
            if self.signer is not None:
                write_signature(self.root, data, self.signer)
            try:
                storage.write_if_unchanged(
                    self.index_uri,
                    data,
                    current.token,
                    content_type="application/json",
                )
            except storage.PreconditionFailed:
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
                continue
            if self.signer is not None:  # after the swap: only indexes that were in place are kept
                uri = storage.join(self.root, history_name(index.sequence))
                storage.write_bytes(uri, data, content_type="application/json")
            return result
        raise RegistryError(
            f"{self.index_uri} changed {self.max_attempts} times while this change was applied; "
            "nothing was written by this command: run it again"
        )

    def restore(self) -> tuple[int, str | None, str | None]:
        """Put back the newest index the promoter signed, byte for byte, when the one in place is not it; returns
        (its sequence, its champion, why the index in place was refused; None when nothing needed restoring)."""
        if self.signer is None:
            raise RegistryError(
                "restore puts back the newest index the promoter signed, and registry.index_signer is 'none' here: "
                "nothing is signed, so there is nothing to check the index against"
            )
        current = storage.read_versioned(self.index_uri)
        try:
            self._check_base(current.data)
        except ForeignIndex as exc:
            why = exc.detail
        else:
            index = _parse_index(current.data, self.index_uri) if current.data else empty_index(self.index_uri)
            return index.sequence, index.alias(CHAMPION), None
        for sequence in reversed(self._kept_sequences()):
            data = self._kept_copy(sequence)
            if data is None:
                continue  # not a copy the promoter signed under its own sequence: never restored
            try:
                storage.write_if_unchanged(self.index_uri, data, current.token, content_type="application/json")
            except storage.PreconditionFailed:
                raise RegistryError(
                    f"{self.index_uri} changed while it was restored; nothing was written: run it again"
                ) from None
            return sequence, _parse_index(data, self.index_uri).alias(CHAMPION), why
        raise RegistryError(
            f"{why}; and no index the promoter signed is kept under "
            f"{self._history_uri} (a registry from before the copies, or another key). "
            "If the index in place is what you want (check it with `python -m trainer registry list`), sign it as "
            "it is with `python -m trainer registry restore --adopt-current`"
        )

    def adopt_current(self) -> tuple[int, str | None]:
        """Sign the index in place as it is (an operator's decision, after reading it): the way from an unsigned
        registry, or from a replaced local key, to a signed one. Returns (its new sequence, its champion)."""
        if self.signer is None:
            raise RegistryError("--adopt-current signs the index, and registry.index_signer is 'none' here")
        newest = max(self._kept_sequences(), default=0)

        def adopt(index: RegistryIndex) -> tuple[RegistryIndex, tuple[int, str | None]]:
            if not index.versions:
                raise RegistryError(f"{self.index_uri} has no versions: there is nothing to adopt")
            sequence = max(index.sequence, newest)  # above every index a service may have accepted
            champion = index.alias(CHAMPION)
            adopted = _event(
                replace(index, sequence=sequence), "adopt", champion or "-", previous_sequence=index.sequence
            )
            return adopted, (sequence + 1, champion)

        return self._update(adopt, check_base=False)

    def register(
        self,
        source_files: str | dict,
        metrics: dict,
        source: str,
        *,
        dataset_version: str | None,
        version: str | None = None,
        extra: dict | None = None,
        alias: str | None = CANDIDATE,
    ) -> str:
        """Copy the files in (a directory, or {name: local path or bytes}), then add the record and the alias."""
        if source not in SOURCES:
            raise RegistryError(f"source must be one of {', '.join(SOURCES)}, got '{source}'")
        version = version or new_version_id()
        destination = self.version_uri(version)
        current = storage.read_versioned(self.index_uri).data
        if self.signer is not None:  # before any file is copied: a refused registration leaves nothing behind
            self._check_base(current)
        if current and version in _parse_index(current, self.index_uri).versions:
            raise RegistryError(
                f"version {version} is already registered at {destination}: registered versions are immutable; "
                "register under a new version id"
            )
        # Files without a record are what a registration killed between its copy and its index write left
        # behind: no reader can have seen them as a version (the record comes last), so they are replaced.
        storage.delete_tree(destination)
        try:
            self._copy_files(source_files, destination)
        except BaseException:
            storage.delete_tree(destination)
            raise
        if extra and "files" in extra:  # the copy must be byte for byte what export verified
            try:
                verify_digests(destination, extra["files"])
            except ModelDirError as exc:
                storage.delete_tree(destination)
                raise RegistryError(f"not registered: the copy into the registry differs ({exc})") from None
        record = VersionRecord.new(
            version,
            metrics=dict(metrics),
            source=source,
            dataset_version=dataset_version,
            created_at=utc_now(),
            **(extra or {}),
        )

        def add(index: RegistryIndex) -> tuple[RegistryIndex, None]:
            if version in index.versions:
                raise RegistryError(f"version {version} is already registered; versions are immutable")
            index = index.with_version(version, record)
            if alias:
                index = index.with_alias(alias, version)
            return _event(index, "register", version, alias=alias, source=source), None

        self._update(add)
        return version

    @staticmethod
    def _copy_files(source_files: str | dict, destination: str) -> None:
        if isinstance(source_files, dict):
            for name, content in source_files.items():
                if isinstance(content, bytes):
                    storage.write_bytes(storage.join(destination, name), content)
                else:
                    storage.upload_file(Path(content), storage.join(destination, name))
        else:
            storage.copy_tree(source_files, destination)

    def check_gate(self, version: str, index: RegistryIndex, *, paired: bool = False) -> None:
        """Raise GateRefused with the numbers unless `version` may become champion. With `paired` (the paired gate
        compared both on the same images) the stored accuracies, measured on different test sets, are not
        compared; the floor still holds."""
        accuracy = index.versions[version].accuracy
        if accuracy is None:
            raise GateRefused(f"version {version} has no accuracy metric; the quality gate cannot pass it")
        if accuracy < self.accuracy_floor:
            raise GateRefused(
                f"promotion of {version} refused: test accuracy {accuracy:.4f} is below the floor "
                f"{self.accuracy_floor:.4f} (registry.accuracy_floor)"
            )
        champion = index.alias(CHAMPION)
        if champion and champion != version and not paired:
            best = index.versions[champion].metrics["accuracy"]
            shortfall = best - accuracy
            # accuracies are image-count ratios: exactly the tolerance below must pass, and a float subtraction
            # can land a hair above it (0.5006 - 0.4956 > 0.005), so "more than" means beyond float noise
            if shortfall > self.regression_tolerance and not math.isclose(shortfall, self.regression_tolerance):
                raise GateRefused(
                    f"promotion of {version} refused: test accuracy {accuracy:.4f} is {shortfall:.4f} below "
                    f"champion {champion} ({best:.4f}), more than the tolerance {self.regression_tolerance:.4f} "
                    "(registry.regression_tolerance)"
                )

    def promote(self, ref: str = CANDIDATE, *, pending_approval: bool = False) -> tuple[str, str | None]:
        """Make `ref` the champion if it passes the gate; returns (new champion, previous champion).

        With a paired gate and a champion, both are scored on the same gate sets first (outside the index update:
        it takes seconds); the update then refuses if the champion changed meanwhile."""
        report = None
        if self.paired_gate is not None:
            index = self.read_index()
            version, champion = self.resolve(ref, index), index.alias(CHAMPION)
            if champion and champion != version:
                report = self.paired_gate(self, version, champion, index)
            if report is not None and report.decision == IDENTICAL:
                raise GateRefused(f"promotion of {version} refused: {report.reasons[0]} (champion {champion})")
            if report is not None and report.decision == REFUSE:
                raise GateRefused(f"promotion of {version} refused: " + "; ".join(report.reasons))
        if pending_approval:  # a run nobody started by hand: gate and report, then wait for the promoter
            index = self.read_index()
            version = self.resolve(ref, index)
            self.check_gate(version, index, paired=report is not None)
            self.record("awaiting_approval", version, champion=index.alias(CHAMPION))
            raise GateRefused(
                f"{version} passed the gate and awaits approval (registry.promote_pipeline_runs is off): promote it "
                f"with `python -m trainer registry promote {version}`"
            )

        def change(index: RegistryIndex) -> tuple[RegistryIndex, tuple[str, str | None]]:
            version = self.resolve(ref, index)
            previous = index.alias(CHAMPION)
            if previous == version:
                raise RegistryError(f"{version} is already the champion")
            if report is not None and (report.candidate, report.champion) != (version, previous):
                raise RegistryError(
                    f"the champion changed to {previous} while the gate compared {version} with {report.champion}; "
                    "nothing was promoted: run it again"
                )
            self.check_gate(version, index, paired=report is not None)
            index = index.with_alias(CHAMPION, version)
            index = index.with_history(CHAMPION, (*index.history.get(CHAMPION, ()), version))
            return _event(index, "promote", version, previous=previous), (version, previous)

        return self._update(change)

    def rollback(self, to: str | None = None) -> tuple[str, str]:
        """Move champion back to the previous champion (or to `to`, an earlier champion); returns (new, old)."""

        def change(index: RegistryIndex) -> tuple[RegistryIndex, tuple[str, str]]:
            history = list(index.history.get(CHAMPION, ()))
            current = index.alias(CHAMPION)
            if not current:
                raise RegistryError("there is no champion to roll back")
            earlier = history[:-1] if history and history[-1] == current else list(history)
            if to is not None:
                target = self.resolve(to, index)
                if target not in earlier:
                    raise RegistryError(
                        f"{target} was never champion before {current}; earlier champions: "
                        f"{', '.join(earlier) or 'none'}"
                    )
                earlier = earlier[: len(earlier) - earlier[::-1].index(target)]
            if not earlier:
                raise RegistryError(f"{current} is the first champion: there is nothing to roll back to")
            index = index.with_alias(CHAMPION, earlier[-1]).with_history(CHAMPION, earlier)
            return _event(index, "rollback", earlier[-1], previous=current), (earlier[-1], current)

        return self._update(change)

    def record(self, action: str, version: str, **details: object) -> None:
        """Append an event (a canary started or ended, say) to index.json's log, by compare-and-swap."""
        self._update(lambda index: (_event(index, action, version, **details), None))


def _parse_index(data: bytes, uri: str) -> RegistryIndex:
    """The one parser (contracts.registry_index), its refusal as a RegistryError."""
    try:
        return parse_index(data, uri)
    except RegistryIndexError as exc:
        raise RegistryError(str(exc)) from None


def _event(index: RegistryIndex, action: str, version: str, **details) -> RegistryIndex:
    return index.with_event({"at": utc_now(), "action": action, "version": version, **details})


# ---- API for the trainers (custom export and AutoML) -----------------------------------------------------------


def register_version(
    settings,
    model_dir_or_files: str | dict,
    metrics: dict,
    source: str,
    *,
    dataset_version: str | None,
    model_version: str | None = None,
    extra: dict | None = None,
) -> str:
    """Register a model version directory (or files) as the new candidate; returns the version id."""
    return ModelRegistry.from_settings(settings).register(
        model_dir_or_files, metrics, source, dataset_version=dataset_version, version=model_version, extra=extra
    )


def register_external_version(
    settings, *, source: str, metrics: dict, dataset_version: str | None, extra: dict | None = None
) -> str:
    """Register a model that lives elsewhere (an AutoML model in Vertex AI): its directory holds metadata only."""
    version = new_version_id()
    metadata = {
        "model_version": version,
        "created_at": utc_now(),
        "source": source,
        "metrics": metrics,
        "dataset": {"version": dataset_version},
        **(extra or {}),
    }
    files = {ModelFiles.METADATA: json.dumps(metadata, indent=2, sort_keys=True).encode()}
    return register_version(
        settings, files, metrics, source, dataset_version=dataset_version, model_version=version, extra=extra
    )


# ---- command line -----------------------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="every version with its metrics and aliases")
    listing.add_argument("--json", action="store_true", help="print index.json")
    show = sub.add_parser("show", help="one version's record and metadata")
    show.add_argument("ref", help="version id or alias (champion, candidate)")
    promote = sub.add_parser("promote", help="make a version champion if it passes the quality gate")
    promote.add_argument("ref", nargs="?", default=CANDIDATE, help="version id or alias (default: candidate)")
    promote.add_argument(
        "--pending-approval",
        action="store_true",
        help="run the gate and record the result, but leave the champion to a person (exit 3): what pipeline runs "
        "do unless registry.promote_pipeline_runs is on",
    )
    rollback = sub.add_parser("rollback", help="move champion back to the previous champion")
    rollback.add_argument("--to", help="an earlier champion to go back to (default: the one before)")
    restore = sub.add_parser(
        "restore", help="put back the newest index the promoter signed, when someone else wrote registry/index.json"
    )
    restore.add_argument(
        "--adopt-current",
        action="store_true",
        help="instead, sign the index in place as it is (after reading it: from an unsigned registry, or a new "
        "local key); local target only",
    )


def format_table(index: RegistryIndex) -> str:
    lines = [f"{'version':<24}{'source':<8}{'accuracy':>9}{'macro P':>9}  {'dataset':<16}{'created':<22}aliases"]
    for version, record in sorted(index.versions.items()):
        accuracy, precision = record.metrics.get("accuracy"), record.metrics.get("macro_precision")
        lines.append(
            f"{version:<24}{record.source or '?':<8}"
            f"{'-' if accuracy is None else format(accuracy, '.4f'):>9}"
            f"{'-' if precision is None else format(precision, '.4f'):>9}  "
            f"{str(record.dataset_version):<16}{record.created_at or '':<22}"
            f"{','.join(index.aliases_of(version))}"
        )
    return "\n".join(lines)


def run(args, settings) -> int:
    registry = ModelRegistry.from_settings(settings)
    if args.action == "list":
        index = registry.read_index()
        if args.json:
            print(json.dumps(index.to_json(), indent=2, sort_keys=True))
        elif not index.versions:
            print(f"no versions registered in {registry.index_uri} yet; `python -m trainer export` registers one")
        else:
            print(format_table(index))
    elif args.action == "show":
        index = registry.read_index()
        version = registry.resolve(args.ref, index)
        out = {
            "version": version,
            "record": index.versions[version].to_json(),
            "aliases": index.aliases_of(version),
        }
        try:
            metadata = json.loads(storage.read_text(storage.join(registry.version_uri(version), ModelFiles.METADATA)))
            metadata.pop("feature_baseline", None)
            out["metadata"] = metadata
        except storage.NotFound:
            pass
        print(json.dumps(out, indent=2, sort_keys=True))
    elif args.action == "promote":
        if settings.target == "gcp":  # only the promoter writes the index there (infra/components/promoter.py)
            raise RegistryError(
                f"on Google Cloud only the promoter account writes {registry.index_uri}: ask it with "
                f"`python -m trainer --env {settings.env} promotion approve {args.ref}` "
                "(needs infra.promotion_approvers), which runs the gate again and promotes"
            )
        version, previous = registry.promote(args.ref, pending_approval=args.pending_approval)
        accuracy = registry.read_index().versions[version].metrics["accuracy"]
        print(f"champion is now {version} (accuracy {accuracy:.4f}); was {previous or 'none'}")
    elif args.action == "rollback":
        if settings.target == "gcp":  # the promoter has no rollback: an earlier champion goes through its gate again
            index = registry.read_index()
            history = [v for v in index.history.get(CHAMPION, ()) if v != index.alias(CHAMPION)]
            earlier = args.to or (history[-1] if history else "<an earlier champion>")
            raise RegistryError(
                f"on Google Cloud only the promoter account writes {registry.index_uri}: bring an earlier champion "
                f"back with `python -m trainer --env {settings.env} promotion approve {earlier}` "
                "(needs infra.promotion_approvers; the gate runs again)"
            )
        version, previous = registry.rollback(args.to)
        print(f"champion rolled back from {previous} to {version}")
    elif args.action == "restore" and args.adopt_current:
        if settings.target == "gcp":  # signing is the promoter's, and its jobs adopt nothing
            raise RegistryError(
                f"on Google Cloud only the promoter signs {registry.index_uri}, and it signs only its own changes: "
                "put back the newest index it signed with `python -m trainer registry restore`"
            )
        sequence, champion = registry.adopt_current()
        print(f"signed {registry.index_uri} as it was (sequence {sequence}, champion {champion or 'none'})")
    elif args.action == "restore":
        sequence, champion, why = registry.restore()
        if why is None:
            print(f"{registry.index_uri} is the promoter's newest (sequence {sequence}); nothing to restore")
        else:
            print(f"refused the index in place: {why}")
            print(f"restored the promoter's index of sequence {sequence} (champion {champion or 'none'})")
    return 0
