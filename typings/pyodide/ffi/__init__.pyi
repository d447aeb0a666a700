from collections.abc import Callable, Iterable
from typing import Any

class JsException(Exception):
    js_error: Any

class JsProxy:
    def to_py(self, *, depth: int = -1, default_converter: Any = None) -> Any: ...
    def destroy(self) -> None: ...
    def __getattr__(self, name: str) -> Any: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

class JsNull: ...

jsnull: JsNull

def to_js(
    obj: Any,
    *,
    depth: int = -1,
    pyproxies: Any = None,
    create_pyproxies: bool = True,
    dict_converter: Callable[[Iterable[Any]], Any] | None = None,
    default_converter: Any = None,
) -> Any: ...
def create_proxy(obj: Any, *, capture_this: bool = False, roundtrip: bool = True) -> Any: ...
def create_once_callable(obj: Callable[..., Any]) -> Any: ...
