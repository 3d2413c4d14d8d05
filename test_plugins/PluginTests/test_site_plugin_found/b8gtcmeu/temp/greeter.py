
from zope.interface import implementer
from twisted.application.service import Service
from twisted.plugin import IPlugin
from pbx.config import ConfigError
from pbx.interfaces import IFeature


class GreeterService(Service):
    def __init__(self, pbx, greeting):
        self.pbx = pbx
        self.greeting = greeting


@implementer(IPlugin, IFeature)
class Greeter:
    name = "greeter"
    description = "Says hello; a test feature."

    def parse_options(self, options):
        greeting = options.get("greeting", "hello")
        if not isinstance(greeting, str):
            raise ConfigError("greeting", "must be a string")
        return greeting

    def make_service(self, pbx, options):
        return GreeterService(pbx, options)


greeter = Greeter()
