"""The ``paging`` feature object the dropin :mod:`pbx.plugins.paging` names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from twisted.plugin import IPlugin

from pbx.interfaces import IPBX, IFeature

if TYPE_CHECKING:
    from pbx.features.paging.options import PagingOptions
    from pbx.features.paging.service import PagingService


@implementer(IPlugin, IFeature)
class PagingFeature:
    """Page groups (``{match: "700", app: paging}``) and intercom (``{match: "_*80X!", app: intercom}``)."""

    name = "paging"
    description = "Paging and intercom: auto-answered page groups, multicast paging, two-way intercom."

    def parse_options(self, options: dict[str, Any]) -> PagingOptions:
        """Validate the groups and the intercom prefix."""
        from pbx.features.paging.options import parse_options

        return parse_options(options)

    def make_service(self, pbx: IPBX, options: PagingOptions) -> PagingService:
        """The service that registers the two applications."""
        from pbx.features.paging.service import PagingService

        return PagingService(pbx, options)


paging = PagingFeature()
