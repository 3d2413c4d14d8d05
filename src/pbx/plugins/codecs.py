"""
The audio codecs pbx ships: G.711 µ-law and A-law, G.722 and Opus.

Found by :func:`pbx.plugin_loader.discover_codecs`.  Making these objects
loads no codec library; that waits for the first encoder or decoder.
"""

from pbx.media.codecs import G722, PCMA, PCMU, Opus

pcmu = PCMU()
pcma = PCMA()
g722 = G722()
opus = Opus()
