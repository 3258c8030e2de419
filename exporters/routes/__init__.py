"""The query API's routes, one router per resource; :func:`exporters.api.create_app` mounts
them (with the bearer auth where a route needs it) and puts an :class:`ApiContext` in the app's
state for them."""

from ._common import ApiContext

__all__ = ["ApiContext"]
