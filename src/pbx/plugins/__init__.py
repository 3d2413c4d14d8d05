"""
The dropin package of pbx features.

Feature plugins are modules here that define objects providing
:class:`pbx.interfaces.IFeature`.  :func:`twisted.plugin.pluginPackagePaths`
extends the search to ``pbx/plugins`` directories elsewhere on ``sys.path``.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))  # type: ignore[name-defined]
__all__: list[str] = []
