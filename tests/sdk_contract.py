"""Offline contracts with the installed Google Cloud SDKs: bind our requests to their real signatures and let
the SDK build its own request objects, stopping only where it would go to the network.

Why: a fake that accepts any keyword lets a renamed keyword (`kms_key_name` for `encryption_spec_key_name`)
through to production, where the real SDK rejects it, or, worse, a guard turns the rejection into silence.
Everything here uses the SDK's own classes; nothing needs credentials or a network. An adapter added later
gets the same checks by driving its `send` through `SdkDouble` and its requests through `capture_rpc`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


class ContractViolation(TypeError):
    """A call the installed SDK would reject. A TypeError, as the SDK's own rejection would be, so a guard that
    wrongly swallows programming errors swallows this too, and the test that checks the calls made fails."""


def bind(func: Callable, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The arguments as the real callable would receive them, or ContractViolation naming the callable and
    the argument it does not take. A keyword that lands in **kwargs is refused too: there it binds to nothing."""
    signature = inspect.signature(func)
    name = getattr(func, "__qualname__", repr(func))
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise ContractViolation(f"{name}{signature} refuses this call: {exc}") from None
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD and bound.arguments.get(parameter.name):
            extra = sorted(bound.arguments[parameter.name])
            raise ContractViolation(f"{name}: {extra} fall into **{parameter.name}, not a named parameter")
    return dict(bound.arguments)


@dataclass
class Call:
    """One call made through an SdkDouble: the path (`aiplatform.Model.upload().deploy`) and its bound args."""

    path: str
    arguments: dict[str, Any]


@dataclass
class _Shared:
    calls: list[Call] = field(default_factory=list)
    returns: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)


class SdkDouble:
    """Stands in for an SDK module, class or instance. Attribute names must exist on the real object; every
    call is bound to the real callable's signature (ContractViolation otherwise) and recorded in `calls`.

    `returns` maps a call path to the real class its result is an instance of (`aiplatform.Model.upload` ->
    aiplatform.Model), so methods on the result are checked too; calling a class returns a double of its
    instance by itself. `results` maps a call path or an attribute path to a plain value to hand back."""

    def __init__(
        self,
        real: Any,
        path: str = "",
        *,
        returns: dict[str, Any] | None = None,
        results: dict[str, Any] | None = None,
        _instance_of: type | None = None,
        _method: bool = False,
        _shared: _Shared | None = None,
    ):
        self._real, self._instance_of, self._method = real, _instance_of, _method
        self._path = path or getattr(real, "__name__", type(real).__name__).rsplit(".", 1)[-1]
        self._shared = _shared or _Shared(returns=dict(returns or {}), results=dict(results or {}))

    @property
    def calls(self) -> list[Call]:
        return self._shared.calls

    def give(self, path: str, value: Any) -> None:
        """From now on, hand back `value` for the call or attribute `path` (as `results=` at construction)."""
        self._shared.results[path] = value

    def paths(self) -> list[str]:
        return [call.path for call in self._shared.calls]

    def only(self, path: str) -> dict[str, Any]:
        """The arguments of the one call made to `path` (fails unless it was made exactly once)."""
        found = [call.arguments for call in self._shared.calls if call.path == path]
        assert len(found) == 1, f"{path} called {len(found)} times; calls: {self.paths()}"
        return found[0]

    def _child(self, real: Any, path: str, **kind: Any) -> SdkDouble:
        return SdkDouble(real, path, _shared=self._shared, **kind)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        path = f"{self._path}.{attr}"
        owner = self._instance_of or self._real
        try:
            static = inspect.getattr_static(owner, attr, None) or getattr(owner, attr)  # modules may load lazily
        except AttributeError:
            raise AttributeError(f"the installed SDK's {self._path} has no attribute {attr!r}") from None
        if self._instance_of is not None and inspect.isfunction(static):
            return self._child(static, path, _method=True)
        real = getattr(owner, attr)
        if isinstance(static, property) or not callable(real):
            if path not in self._shared.results:
                raise AssertionError(f"{path} is read: give its value as results={{{path!r}: ...}}")
            return self._shared.results[path]
        return self._child(real, path)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._method:
            arguments = bind(self._real, None, *args, **kwargs)
            arguments.pop(next(iter(inspect.signature(self._real).parameters)))
        else:
            arguments = bind(self._real, *args, **kwargs)
        self._shared.calls.append(Call(self._path, arguments))
        if self._path in self._shared.results:
            return self._shared.results[self._path]
        path = f"{self._path}()"
        if inspect.isclass(self._real):
            return self._child(self._real, path, _instance_of=self._real)
        if self._path in self._shared.returns:
            return self._child(self._shared.returns[self._path], path, _instance_of=self._shared.returns[self._path])
        return None


# ---- the Vertex AI SDK, offline ---------------------------------------------------------------------------------


class RequestCaptured(Exception):  # not an error: the point where the SDK would go to the network
    """Raised by CapturingClient at the first RPC: the request the SDK built is in `client.requests`."""


class CapturingClient:
    """A GAPIC client whose every RPC records (method, kwargs) and raises RequestCaptured."""

    def __init__(self, *, answers: dict[str, Any] | None = None):
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.answers = dict(answers or {})

    def select_version(self, _version: str) -> CapturingClient:
        return self

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)

        def rpc(*args: Any, **kwargs: Any) -> Any:
            self.requests.append((method, {"args": args, **kwargs}))
            if method in self.answers:
                return self.answers[method]
            raise RequestCaptured(method)

        return rpc

    def only(self, method: str) -> dict[str, Any]:
        found = [kwargs for name, kwargs in self.requests if name == method]
        assert len(found) == 1, f"{method} sent {len(found)} times; sent: {[n for n, _ in self.requests]}"
        return found[0]


@contextmanager
def vertex_offline(project: str, location: str, **init: Any) -> Iterator[Any]:
    """aiplatform.init with anonymous credentials for the block, then the previous global config back (the
    SDK keeps it in a module-level object, which would otherwise leak into the next test)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer

    saved = dict(initializer.global_config.__dict__)
    try:
        aiplatform.init(project=project, location=location, credentials=AnonymousCredentials(), **init)
        yield aiplatform
    finally:
        initializer.global_config.__dict__.clear()
        initializer.global_config.__dict__.update(saved)


def capture_rpc(sdk_object: Any, call: Callable[[], Any], **answers: Any) -> CapturingClient:
    """Run `call` (which sends through `sdk_object`'s API client: a resource class or instance) until its
    first RPC that has no answer; returns the client holding what the SDK sent."""
    client = CapturingClient(answers=answers)
    real = sdk_object.__dict__.get("_instantiate_client") if inspect.isclass(sdk_object) else None
    if inspect.isclass(sdk_object):
        sdk_object._instantiate_client = classmethod(lambda cls, *a, **k: client)
    else:
        sdk_object.api_client = client
    try:
        call()
    except RequestCaptured:
        pass
    else:
        raise AssertionError("the SDK call finished without sending a request")
    finally:
        if inspect.isclass(sdk_object):
            if real is None:
                del sdk_object._instantiate_client
            else:
                sdk_object._instantiate_client = real
    return client


def offline_model(name: str, version_id: str = "1") -> Any:
    """An aiplatform.Model for an existing custom-container model, built from its resource proto (no RPC)."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform.compat.types import model as gca_model

    resource = gca_model.Model(
        name=name,
        version_id=version_id,
        create_time={"seconds": 1},
        supported_deployment_resources_types=[gca_model.Model.DeploymentResourcesType.DEDICATED_RESOURCES],
    )
    return aiplatform.Model._construct_sdk_resource_from_gapic(resource)


def offline_endpoint(name: str, traffic_split: dict[str, int], deployed: list[str] | None = None) -> Any:
    """An aiplatform.Endpoint with the given traffic split and deployed model ids (no RPC)."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform.compat.types import endpoint as gca_endpoint

    resource = gca_endpoint.Endpoint(
        name=name,
        traffic_split=traffic_split,
        create_time={"seconds": 1},
        deployed_models=[gca_endpoint.DeployedModel(id=model_id) for model_id in deployed or traffic_split],
    )
    return aiplatform.Endpoint._construct_sdk_resource_from_gapic(resource)
