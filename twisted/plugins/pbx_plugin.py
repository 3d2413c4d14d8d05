"""The ``twistd pbx`` dropin: one ServiceMaker, nothing imported eagerly."""

from twisted.application.service import ServiceMaker

pbx = ServiceMaker(
    "pbx",
    "pbx.tap",
    "An enterprise telephone system: SIP, media, voicemail, REST API.",
    "pbx",
)
