"""Which model version a role serves, and how that changes while the service runs.

Why a slot per role: the registry alias a role follows (`<root>@champion`) moves when someone promotes or rolls
back, and a restart is not how a new champion should reach the service. A ModelSlot's background thread polls
the registry index cheaply (its GCS generation, or the local file's inode/size/times: one small request or one
stat), and only when the alias names another version does it read that version, check every file it reads
against the recorded SHA-256, build an ONNX Runtime session, warm it up and then swap: one attribute
assignment. Requests read `slot.current` once and serve with that snapshot, so they never wait for a load and
never see half of one; the old version is dropped when its last request ends (two versions at most).
A version that fails a check is refused, logged, counted and remembered (never downloaded again by this
process); whatever served before keeps serving. A plain model directory never changes: its slot never polls.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from contracts.layout import REGISTRY_INDEX
from service import metrics
from service.config import ServiceConfig
from service.index_verification import IndexRefused, IndexVerifier, NotFound, ReplayGuard
from service.model_bundle import ModelBundle, load_resolved, verified_artifact
from service.model_errors import ModelLoadError, ModelReadError, ModelRefused, NoModelPromoted, ObjectNotFound
from service.model_reader import ModelReader, join
from service.model_reference import Resolved, missing_index, parse_index, select_version, split_reference
from service.runtime import ModelRuntimeError, OnnxClassifier

log = logging.getLogger("service")
NO_MODEL = "none"  # the model version reported while a slot serves nothing
_UNSEEN = object()  # no index version seen yet: the next poll reads it
_RETRY = object()  # the version the index named could not be read: the next poll reads the index and it again


@dataclass(frozen=True)
class LoadedModel:
    """One servable version: its files as read, its warmed-up session, and the artifact that session runs."""

    bundle: ModelBundle
    classifier: OnnxClassifier
    artifact: str  # the file that serves: model.onnx or model.int8.onnx

    @cached_property
    def version(self) -> str:
        return self.bundle.version

    @cached_property
    def class_names(self) -> list[str]:
        return self.bundle.class_names


def _release_memory(old: weakref.ref[LoadedModel] | None) -> None:
    """Hand the freed heap back to the OS once the old version's last request is done with it.

    Why: a session built and dropped leaves its memory in malloc's free lists (in the poll thread's own arena),
    so each swap ratcheted a worker's RSS up (63 -> 98 MB over 12 swaps of the demo model); malloc_trim keeps
    it at one version plus what serving needs. glibc only: elsewhere nothing is done."""
    deadline = time.monotonic() + 2.0
    while old is not None and old() is not None and time.monotonic() < deadline:
        time.sleep(0.01)  # a request that read the old snapshot is still running with it
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None).malloc_trim(0)


class ModelSlot:
    """Follows one model reference for one role ("champion", say); `current` is what serves, or None."""

    def __init__(self, reference: str, role: str, config: ServiceConfig, *, artifact_preference: str = "float"):
        self.reference = reference
        self.role = role
        self.config = config
        self.artifact_preference = artifact_preference
        self.current: LoadedModel | None = None  # replaced, never changed: read it once per request
        self.waiting_reason: str | None = None  # why `current` is None (paths and names: for the operator)
        self.waiting_code: str | None = None  # the same as a reason code public routes may show
        self.pending: ModelBundle | None = None  # read by prepare() (the gunicorn master), no session yet
        self.refused: dict[str, str] = {}  # version id (or directory) -> why it was refused
        self._root, self._alias = split_reference(reference)
        self._index_uri = join(self._root, REGISTRY_INDEX)
        self._reader = ModelReader(config.state_dir)
        self._seen: object = _UNSEEN  # the index version last looked at
        self._serving_id: str | None = None  # the registry version id of `current` (or of `pending`)
        self._listeners: list[Callable[[LoadedModel], None]] = []
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_read_error: str | None = None
        self._verifier = (
            IndexVerifier.from_pem(config.index_public_key, "INDEX_PUBLIC_KEY") if config.index_public_key else None
        )
        self._replay = ReplayGuard(config.state_dir)

    @property
    def follows_registry(self) -> bool:
        """True for `<root>@<alias or version id>`; a plain model directory never changes."""
        return self._alias is not None

    @property
    def version(self) -> str:
        current = self.current
        return NO_MODEL if current is None else current.version

    def on_swap(self, listener: Callable[[LoadedModel], None]) -> None:
        """Call `listener(new)` (in the thread that swapped) each time another version starts serving."""
        self._listeners.append(listener)

    # ---- loading ---------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Read (and verify) the version the reference names now, without building a session: the gunicorn
        master does this once before forking, so a gs:// model is downloaded once and a bad model directory stops
        start-up. For a registry reference nothing stops start-up: the slot waits (or refuses) and polls on."""
        with self._poll_lock:
            if not self.follows_registry:
                self.pending = load_resolved(
                    Resolved(self.reference, self._root, None),
                    self._reader,
                    artifact_preference=self.artifact_preference,
                    require_digests=self.config.require_digests,
                )
                return
            found = self._changed_version()
            if found is not None:
                try:
                    self.pending = self._read(found, download=True)
                    self._serving_id = found.version_id
                except ModelReadError as exc:
                    self._retry_later(found, exc)
                except ModelLoadError as exc:
                    self._refuse(found, exc)

    def activate(self) -> None:
        """Build this process's session for the prepared version and serve it (each gunicorn worker, after the
        fork: sessions are not shared across processes). A plain directory that fails raises, which stops the
        worker's boot; a registry reference refuses the version and keeps polling."""
        with self._poll_lock:
            bundle, self.pending = self.pending, None
            if bundle is not None:
                try:
                    self._install(self._build(bundle), bundle.version_id)
                except (ModelLoadError, ModelRuntimeError) as exc:
                    if not self.follows_registry:
                        raise
                    self._serving_id = None
                    found = Resolved(bundle.requested_uri, bundle.version_dir, bundle.alias, bundle.version_id)
                    if isinstance(exc, ModelReadError):
                        self._retry_later(found, exc)
                    else:
                        self._refuse(found, exc)
                return
        if self.current is None:
            self.poll_once()

    def poll_once(self) -> bool:
        """Look at the registry once; load, verify, warm up and swap if the alias names another version.
        True when another version now serves. Cheap when nothing changed: one stat or one metadata request."""
        if not self.follows_registry or not self._poll_lock.acquire(blocking=False):
            return False
        try:
            found = self._changed_version()
            if found is None:
                return False
            try:
                loaded = self._build(self._read(found, download=False))
            except ModelReadError as exc:
                self._retry_later(found, exc)
                return False
            except (ModelLoadError, ModelRuntimeError) as exc:
                self._refuse(found, exc)
                return False
            self._install(loaded, found.version_id)
            return True
        finally:
            self._poll_lock.release()

    def _changed_version(self) -> Resolved | None:
        """The version the alias names now, if it differs from what serves and was not refused; else None."""
        try:
            token = self._reader.version_token(self._index_uri)
            if token == self._seen:  # unchanged (or still absent): nothing else is read
                return None
            token, data = self._reader.read_versioned(self._index_uri)
        except ModelReadError as exc:
            self._note_read_error(str(exc))
            return None
        if token == self._seen:
            return None
        if self._seen is not _RETRY:  # a version that failed to read is read again: the same error is not news
            self._last_read_error = None
        self._seen = token
        try:
            if data is None:
                raise missing_index(self.reference)
            self._verify_index(data)
            found = select_version(self.reference, parse_index(data, self._index_uri), self._index_uri)
        except NoModelPromoted as exc:
            if self.current is None and self.pending is None:
                self.waiting_reason, self.waiting_code = str(exc), "not_promoted"
            else:
                log.warning("%s; still serving %s", exc, self.version, extra=self._fields("model_unset"))
            return None
        except ModelReadError as exc:  # the signature could not be read (an outage): look again next poll
            self._seen = _RETRY
            self._note_read_error(str(exc))
            return None
        except IndexRefused as exc:  # not signed by the promoter: keep what serves, once per index version
            metrics.INDEX_REFUSED.labels(self.role, exc.reason).inc()
            newest = self._newest_accepted()  # what a sibling accepted while this worker's polls saw only this
            if newest is not None and not self._is_new(newest):
                newest = None  # it names what serves (or a version refused here): nothing to follow
            log.error(
                "refused the registry index for %s (%s): %s; %s",
                self.role,
                exc.reason,
                exc,
                f"following the newest index this service accepted, which names {newest.version_id}"
                if newest is not None
                else f"still serving {self.version}"
                if self.current is not None
                else "nothing is served",
                extra=self._fields("index_refused", reason=exc.reason, detail=str(exc)),
            )
            if newest is not None:
                return newest
            if self.current is None:
                self.waiting_reason = f"the registry index was refused: {exc}"
            return None
        except ModelLoadError as exc:  # a malformed index: keep what serves, say so once per index version
            log.error("%s; still serving %s", exc, self.version, extra=self._fields("index_invalid", reason=str(exc)))
            if self.current is None:
                self.waiting_reason, self.waiting_code = str(exc), "index_invalid"
            return None
        if not self._is_new(found):
            self._last_read_error = None  # whatever failed to read before is read (or not needed) now
            return None
        return found

    def _is_new(self, found: Resolved) -> bool:
        """True when `found` is neither what serves nor a version this process refused."""
        return found.version_id != self._serving_id and (found.version_id or found.version_dir) not in self.refused

    def _newest_accepted(self) -> Resolved | None:
        """What the newest index this service accepted names (another worker may have accepted it while this one's
        polls saw only the refused index that followed: a replay or a forgery), None when there is none or it names
        nothing."""
        data = self._replay.newest()
        if data is None:
            return None
        try:
            return select_version(self.reference, parse_index(data, self._index_uri), self._index_uri)
        except (NoModelPromoted, ModelLoadError):
            return None

    def _verify_index(self, data: bytes) -> None:
        """IndexRefused unless the promoter's key signed these exact bytes (when a public key is configured)."""
        if self._verifier is None:
            return

        def read(name: str) -> bytes:
            try:
                return self._reader.read(join(self._root, name))
            except ObjectNotFound:
                raise NotFound(name) from None

        self._verifier.verify(data, self._root, read)
        self._replay.admit(data, self._index_uri)  # signed, but not older than an index accepted before

    def _read(self, found: Resolved, *, download: bool) -> ModelBundle:
        return load_resolved(
            found,
            self._reader,
            artifact_preference=self.artifact_preference,
            require_digests=self.config.require_digests,
            download=download,
        )

    def _build(self, bundle: ModelBundle) -> LoadedModel:
        """Session from the verified file, then warm-up: a version that cannot answer never serves."""
        started = time.perf_counter()
        try:
            with verified_artifact(bundle, self._reader) as path:
                classifier = OnnxClassifier(path, bundle.metadata["input"]["name"], len(bundle.class_names))
            classifier.warm_up()
        except ModelRuntimeError as exc:
            raise ModelRefused(f"{bundle.model_path}: {exc}", "invalid") from None
        log.info(
            "model %s ready in worker %d (%s, %s; session + warm-up %.1f ms)",
            bundle.version,
            os.getpid(),
            bundle.artifact,
            f"sha256 checked against the {bundle.digests_from}" if bundle.verified else "unverified",
            (time.perf_counter() - started) * 1000,
            extra=self._fields("model_ready", model_version=bundle.version, artifact=bundle.artifact),
        )
        return LoadedModel(bundle, classifier, bundle.artifact)

    def _install(self, loaded: LoadedModel, version_id: str | None) -> None:
        previous, old = self.version, self.current
        self.current = loaded  # the swap: requests that started before finish with their own snapshot
        self._serving_id = version_id
        self.waiting_reason = self.waiting_code = self._last_read_error = None
        metrics.MODEL_SWAPS.labels(self.role).inc()
        for listener in self._listeners:
            listener(loaded)
        gone = weakref.ref(old) if old is not None else None
        del old
        _release_memory(gone)
        if previous != NO_MODEL:
            log.info(
                "%s now serves %s (was %s)",
                self.role,
                loaded.version,
                previous,
                extra=self._fields("model_swapped", model_version=loaded.version, previous=previous),
            )

    def _refuse(self, found: Resolved, exc: Exception) -> None:
        reason = exc.reason if isinstance(exc, ModelRefused) else "invalid"
        key = found.version_id or found.version_dir
        self.refused[key] = str(exc)
        metrics.MODEL_REFUSED.labels(self.role, reason).inc()
        log.error(
            "refused model version %s for %s (%s): %s; %s",
            key,
            self.role,
            reason,
            exc,
            f"still serving {self.version}"
            if self.current is not None
            else "nothing is served until another version is promoted",
            extra=self._fields("model_refused", model_version=key, reason=reason, detail=str(exc)),
        )
        if self.current is None:
            self.waiting_reason, self.waiting_code = f"version {key} was refused: {exc}", f"refused_{reason}"

    def _retry_later(self, found: Resolved, exc: ModelLoadError) -> None:
        self._seen = _RETRY  # look again next poll: a read error may pass
        self._note_read_error(f"cannot load version {found.version_id or found.version_dir}: {exc}")

    def _note_read_error(self, message: str) -> None:
        if message != self._last_read_error:  # once per distinct error, not every poll during an outage
            log.warning("%s; retrying every %g s", message, self.config.model_poll_s, extra=self._fields("read_error"))
        self._last_read_error = message
        if self.current is None and self.pending is None:
            self.waiting_reason, self.waiting_code = message, "read_error"

    def _fields(self, event: str, **more: str) -> dict[str, dict[str, str]]:
        return {"fields": {"event": event, "role": self.role, "reference": self.reference, **more}}

    # ---- the poll thread ------------------------------------------------------------------------------------

    def start(self, interval_s: float | None = None) -> None:
        """Poll every `interval_s` (default MODEL_POLL_S) in a daemon thread; a plain directory starts none.
        Call it in the process that serves (a gunicorn worker, after the fork: threads do not survive one)."""
        if not self.follows_registry or (self._thread is not None and self._thread.is_alive()):
            return
        interval = self.config.model_poll_s if interval_s is None else interval_s
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(interval,), name=f"model-poll-{self.role}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.poll_once()
            except Exception:
                log.exception("the %s model poll failed; trying again in %g s", self.role, interval_s)
