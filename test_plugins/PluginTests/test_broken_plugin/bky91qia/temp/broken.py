
from zope.interface import implementer
from twisted.plugin import IPlugin
from pbx.interfaces import IFeature


@implementer(IPlugin, IFeature)
class Broken:
    name = "broken"
    description = "Claims IFeature but lacks make_service."

    def parse_options(self, options):
        return options


broken = Broken()
