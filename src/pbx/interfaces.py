"""
The public contracts of pbx.

Feature plugins, storage backends and the core meet only through these
interfaces.  A plugin is an object in the dropin package :mod:`pbx.plugins` (or
a site plugin directory) that provides :class:`IFeature`; the loader finds it
with :func:`twisted.plugin.getPlugins`, checks it with ``verifyObject`` and
configures it by its :attr:`IFeature.name` from the ``features:`` section.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

from twisted.plugin import IPlugin


class IFeature(IPlugin):
    """
    A feature of the PBX (voicemail, queues, parking, ...) delivered as a plugin.

    The object found by the plugin loader is a factory: it validates its own
    options and makes one service per running PBX.
    """

    name = Attribute("The key of this feature in the ``features:`` config section.")
    description = Attribute("One line saying what the feature does.")

    def parse_options(options):  # type: ignore[no-untyped-def]
        """
        Validate this feature's options from the config file.

        :param options: the mapping under ``features: <name>:`` (``enabled``
            already removed).
        :returns: any value the feature wants back in :meth:`make_service`.
        :raises pbx.errors.ConfigError: naming the offending key, relative to
            the feature's own section.
        """

    def make_service(pbx, options):  # type: ignore[no-untyped-def]
        """
        Make the service that runs this feature.

        :param pbx: the running :class:`IPBX`.
        :param options: what :meth:`parse_options` returned.
        :returns: an ``IService``; it is started and stopped with the PBX.
        """


class IDialplanApplication(Interface):
    """
    Something a dialplan route can send a call to: voicemail, an auto
    attendant, a queue, a conference, a park slot, a page group.

    An application may also have a ``disposition`` attribute: what the call
    detail record of a call it answered says instead of ``ANSWERED``
    (voicemail's deposit says ``VOICEMAIL``; see
    :data:`pbx.records.DISPOSITIONS`).
    """

    name = Attribute("The name a route uses: ``{app: voicemail}``.")

    def run(channel, args):  # type: ignore[no-untyped-def]
        """
        Handle one call.

        :param channel: the call's channel (answer, play, record, ...).
        :param args: the route's arguments for this application.
        :returns: a Deferred that fires when the application is done with
            the call.
        """


class IPBX(Interface):
    """
    What a running PBX offers its features, and all that they use of it.

    A feature is given this object and nothing else: its config, store,
    clock, threads and secrets come from here, and it plugs into the PBX
    only through the registration methods below.
    """

    config = Attribute("The validated :class:`pbx.config.Config`.")
    store = Attribute("The :class:`IStore` in use.")
    clock = Attribute("The ``IReactorTime`` every timer must use.")
    tcp = Attribute(
        "The ``IReactorTCP`` a feature opens network clients with"
        " (voicemail's SMTP client); never used to listen."
    )
    lockout = Attribute(
        "The :class:`pbx.security.lockout.Lockout` shared by every check of a"
        " secret a person types (API logins, voicemail PINs on a phone), so a"
        " guesser gets no fresh attempts by switching between them."
    )
    applications = Attribute("Mapping of name to registered IDialplanApplication.")
    started_at = Attribute("Clock time the PBX started.")
    listeners = Attribute("List of strings naming every open listener.")
    features = Attribute("Names of the enabled features.")
    trunk_hooks = Attribute(
        "The :class:`pbx.trunks.hooks.TrunkHooks` of calls through trunks: append to "
        "``outbound`` a callable that decorates or refuses each INVITE sent to a trunk, "
        "to ``inbound`` one that checks or refuses each INVITE from a trunk."
    )

    def run_in_thread(f, *args, **kwargs):  # type: ignore[no-untyped-def]
        """
        Run blocking ``f(*args, **kwargs)`` (file work, a recogniser, a
        library without async) off the reactor thread.

        :returns: Deferred firing, in the reactor thread, with what ``f``
            returned, or failing with what it raised.
        """

    def hash_secret(secret):  # type: ignore[no-untyped-def]
        """
        PBKDF2-hash ``secret`` (a password, a PIN) off the reactor thread.

        :returns: Deferred firing with the encoded hash
            (see :mod:`pbx.security.passwords`).
        """

    def verify_secret(secret, encoded):  # type: ignore[no-untyped-def]
        """
        Check ``secret`` against an encoding made by :meth:`hash_secret`,
        off the reactor thread.

        :returns: Deferred firing with a bool.
        """

    def hold_pin(pin):  # type: ignore[no-untyped-def]
        """
        Keep ``pin`` in memory, for :meth:`verify_secret`, until its hash is
        made; then :meth:`hash_pin_later`.  For many PINs at once (at start),
        which hashed one by one would delay ``pbx ready`` for minutes.

        :returns: a placeholder to store as the PIN's encoding now.
        """

    def hash_pin_later(number, placeholder):  # type: ignore[no-untyped-def]
        """
        Hash the PIN held under ``placeholder``, already stored as extension
        ``number``'s PIN, off the startup path; the hash replaces the
        placeholder in the store unless the PIN changed meanwhile.
        """

    def authenticate(request):  # type: ignore[no-untyped-def]
        """
        The session of an API request: a
        :class:`pbx.api.tokens.Session` with ``username``, ``role``
        (``"admin"`` or ``"user"``) and ``extension``.

        :raises pbx.api.http.APIError: 401 when the request carries no
            live token.
        """

    def provide(interface, provider):  # type: ignore[no-untyped-def]
        """
        Offer ``provider`` to other features as the one provider of
        ``interface`` (e.g. voicemail's greetings to the attendant).

        :raises TypeError: if ``provider`` does not provide ``interface``.
        :raises ValueError: if ``interface`` already has a provider.
        """

    def lookup(interface):  # type: ignore[no-untyped-def]
        """
        The provider of ``interface`` given to :meth:`provide`, or None when
        no enabled feature offers it.
        """

    def live_calls():  # type: ignore[no-untyped-def]
        """A list of JSON-ready dicts, one per call in progress."""

    def extension_changed(number):  # type: ignore[no-untyped-def]
        """An extension was created or changed through the API."""

    def extension_deleted(number):  # type: ignore[no-untyped-def]
        """An extension was deleted through the API: drop its live state."""

    def credentials_changed(username):  # type: ignore[no-untyped-def]
        """
        The secret of ``username`` (an extension's PIN or password, an
        administrator's password) changed, or it was disabled: end every
        API session it has, so a token taken before the change stops working.
        """

    def register_application(application):  # type: ignore[no-untyped-def]
        """
        Make an :class:`IDialplanApplication` reachable from the dialplan.

        :raises ValueError: if the name is taken.
        """

    def add_diverter(diverter):  # type: ignore[no-untyped-def]
        """
        Offer calls that nobody will answer to ``diverter`` (voicemail).

        ``diverter(callee, reason)`` is called when a call to extension
        ``callee`` is about to fail and no forward of the extension applies;
        ``reason`` is ``"busy"``, ``"no_answer"``, ``"dnd"`` or
        ``"unavailable"`` (not registered).  It returns a
        :class:`pbx.calls.dialplan.ToApplication` to hand the caller to, or
        None to let the call fail.  Diverters are asked in the order added;
        the first answer wins.
        """

    def dial(channel, number, caller=None, caller_name=None, timeout=None):  # type: ignore[no-untyped-def]
        """
        Connect the caller on ``channel`` (a call pbx answered) to extension
        ``number`` as a direct call would go: unconditional forward, DND,
        busy and no-answer forwards, then diverters (voicemail).  The callee
        sees ``caller``/``caller_name`` (default: the channel's caller).

        :returns: Deferred firing with the outcome once the attempt is over:
            ``"answered"`` (after the bridged call ended), ``"diverted"``
            (an application ran on the channel and returned), or, when
            nobody answered and nothing diverted, ``"busy"``,
            ``"no_answer"``, ``"unavailable"`` or ``"not_found"``.
        """

    def originate(number, caller, caller_name="", timeout=None, headers=()):  # type: ignore[no-untyped-def]
        """
        Place a leg: ring every registered phone of extension ``number`` at
        once, showing ``caller``/``caller_name``, for ``timeout`` seconds
        (default: ``calls.ring_timeout``).  No forward or diversion applies:
        what follows an unanswered leg is the caller's policy.  Several legs
        may ring at once (a queue ringing its agents); cancelling the
        returned Deferred stops the ringing.  ``headers``, a sequence of
        ``(name, value)`` pairs, are added to every INVITE sent (a page's
        ``Call-Info: <sip:...>;answer-after=0``); a name that is not a token
        or that pbx writes itself (Via, From, To, Call-ID, CSeq, Contact...),
        or a value holding a line break, raises ``ValueError``.

        :returns: Deferred firing with a
            :class:`pbx.calls.originated.Originated`: ``outcome`` is
            ``"answered"`` with the answered leg's ``channel`` (an
            :class:`IChannel`: announce to the answerer, then bridge or join
            it), ``ended`` and ``hang_up``; otherwise ``"busy"``,
            ``"no_answer"``, ``"unavailable"``, ``"not_found"``,
            ``"cancelled"`` or ``"failed"``.
        """

    def subscribe_calls(subscriber, kinds=None):  # type: ignore[no-untyped-def]
        """
        Call ``subscriber(event)`` with every call event (of ``kinds``, an
        iterable of event kinds; None: all) from now on: a
        :class:`pbx.calls.events.CallEvent` for each call's ``created``,
        ``ringing``, ``answered``, ``bridged``, ``held``, ``resumed``,
        ``transferred`` and ``ended`` (with its call detail records).  A
        subscriber that raises is logged and stays subscribed.

        :returns: a callable that unsubscribes.
        """

    def tap_call(call_id):  # type: ignore[no-untyped-def]
        """
        The media of the answered two-party call ``call_id`` (as call events
        name it) that pbx relays: a :class:`pbx.calls.tap.CallTap` whose
        ``tap(leg, listener)`` hands each RTP packet leg ``"a"`` (the
        caller) or ``"b"`` (the callee) sends to ``listener`` (recording),
        ``untap(leg)`` stops that, and ``payload_types(leg)`` and
        ``codecs`` say how to decode them.  None when no such call is up
        (it ended, is not answered yet, or pbx terminates its media).
        """

    def register_event_package(package):  # type: ignore[no-untyped-def]
        """
        Accept SUBSCRIBE requests for an :class:`IEventPackage` (RFC 6665).

        :raises ValueError: if the event is taken.
        """

    def notify(event, resource):  # type: ignore[no-untyped-def]
        """
        The state of ``resource`` (an extension number) changed for
        ``event``: send NOTIFY to every subscriber, and unsolicited NOTIFY
        to its registered phones when the package asks for that.
        """

    def mount_api(name, resource, paths):  # type: ignore[no-untyped-def]
        """
        Serve ``resource`` (an ``IResource``, e.g. a Klein app's) under
        ``/api/v1/<name>/``.  ``paths`` is the OpenAPI ``paths`` mapping it
        adds (keys are full paths).  Handlers authenticate with
        :meth:`authenticate`.
        """

    def before_ready(work):  # type: ignore[no-untyped-def]
        """
        Run ``work()`` (it may return a Deferred or a coroutine) during
        startup, once every listener is bound and the configuration is in
        the store, and before ``pbx ready``; call it from a feature's
        ``startService``.  Work that generates secrets (voicemail PINs) goes
        here, so a start that cannot bind its ports generates nothing.  A
        failure fails the start.
        """

    def announce_secret(kind, name, secret):  # type: ignore[no-untyped-def]
        """
        Show a secret generated for someone (``kind`` such as ``"voicemail
        PIN"``, ``name`` an extension number or user name) to the operator:
        every secret announced during startup is printed once, in one block
        just before ``pbx ready``, and nowhere else.  Features never log
        secrets themselves; only a hash of the secret is kept.
        """


class IStartupReport(Interface):
    """
    Who hears how a start of the PBX ended: the waiting parent of a
    daemonising ``twistd``, and the process's exit status.
    """

    def starting():  # type: ignore[no-untyped-def]
        """The PBX service is starting; the outcome comes later (startup is asynchronous)."""

    def started():  # type: ignore[no-untyped-def]
        """Every listener is bound and ``pbx ready`` was logged."""

    def failed(problem):  # type: ignore[no-untyped-def]
        """
        The start failed for ``problem`` (one line, already logged): say so
        to whoever waits and end the process with a non-zero status.
        """


class IEventPackage(Interface):
    """A SIP event package served to subscribers (RFC 6665 §7)."""

    event = Attribute("The Event header token, e.g. ``message-summary``.")
    content_type = Attribute("The Content-Type of NOTIFY bodies.")
    unsolicited = Attribute(
        "Whether registered phones without a subscription also get NOTIFY"
        " (out of dialog) when the state changes."
    )

    def authorize(subscriber, resource):  # type: ignore[no-untyped-def]
        """
        Whether authenticated extension ``subscriber`` may watch
        ``resource`` (the Request-URI's user part).  A bool.
        """

    def state(resource):  # type: ignore[no-untyped-def]
        """Deferred firing with the NOTIFY body (bytes) for ``resource`` now."""


class IStore(Interface):
    """
    Persistent state of the PBX.

    Every method returns a Deferred; no backend blocks the reactor.  The same
    test suite (``tests/support/store_suite.py``) runs against every backend.
    """

    def migrate():  # type: ignore[no-untyped-def]
        """
        Bring the schema to the newest version.

        :returns: Deferred firing with the schema version now in place.
        """

    def close():  # type: ignore[no-untyped-def]
        """Release connections; returns a Deferred."""

    # Extensions
    def get_extension(number):  # type: ignore[no-untyped-def]
        """Deferred firing with the ExtensionRecord for ``number`` or None."""

    def list_extensions():  # type: ignore[no-untyped-def]
        """Deferred firing with every ExtensionRecord, ordered by number."""

    def put_extension(record):  # type: ignore[no-untyped-def]
        """Insert or replace one ExtensionRecord; Deferred firing with None."""

    def delete_extension(number):  # type: ignore[no-untyped-def]
        """Delete one extension and its bindings; Deferred firing True if it existed."""

    # Registrations (location service)
    def put_binding(binding):  # type: ignore[no-untyped-def]
        """Insert or replace the binding for (aor, contact)."""

    def delete_binding(aor, contact):  # type: ignore[no-untyped-def]
        """Remove one binding; Deferred firing True if it existed."""

    def write_bindings(puts, deletes):  # type: ignore[no-untyped-def]
        """
        Apply many binding changes in one transaction: delete each
        ``(aor, contact)`` in ``deletes``, then insert or replace each binding
        in ``puts``.  Deferred firing with None.
        """

    def delete_bindings(aor):  # type: ignore[no-untyped-def]
        """Remove every binding of ``aor``; Deferred firing with the count."""

    def list_bindings(aor=None):  # type: ignore[no-untyped-def]
        """Deferred firing with bindings (of one AOR, or all), ordered by aor, contact."""

    def expire_bindings(now):  # type: ignore[no-untyped-def]
        """Delete bindings whose ``expires_at <= now``; Deferred firing with the count."""

    # Call detail records
    def add_call_record(record):  # type: ignore[no-untyped-def]
        """Store one CallRecord; Deferred firing with its new id once committed."""

    def list_call_records(offset=0, limit=100, caller=None, callee=None, since=None, until=None, linked_id=None):  # type: ignore[no-untyped-def]  # noqa: E501
        """
        Deferred firing with ``(total, records)``: records newest first,
        filtered by caller/callee (exact), start time range and linked id.
        """

    # Journal of live calls (a crash cannot lose an answered call's records)
    def journal_calls(entries):  # type: ignore[no-untyped-def]
        """Insert or replace LiveCallEntry rows; Deferred firing once committed."""

    def touch_calls(node, now):  # type: ignore[no-untyped-def]
        """Set ``touched`` of every entry of ``node`` to ``now``; Deferred firing with the count."""

    def finish_call(node, call, records, live=()):  # type: ignore[no-untyped-def]
        """
        Store a call's CallRecords and drop its journal entries in one
        transaction; Deferred firing once committed.  With ``live``
        LiveCallEntry rows, the call goes on: they become its entries.
        """

    def recover_calls(node):  # type: ignore[no-untyped-def]
        """
        Turn every journal entry of ``node`` into an ``INTERRUPTED``
        CallRecord in one transaction; Deferred firing with those records.
        """

    # Audit trail
    def add_audit(event):  # type: ignore[no-untyped-def]
        """Store one AuditEvent; Deferred firing with its id once committed."""

    def list_audit(limit=100, kind=None):  # type: ignore[no-untyped-def]
        """Deferred firing with AuditEvents, newest first."""

    # API administrators
    def get_admin(username):  # type: ignore[no-untyped-def]
        """Deferred firing with an AdminRecord or None."""

    def put_admin(record):  # type: ignore[no-untyped-def]
        """Insert or replace one AdminRecord."""

    # Feature data: small JSON documents, by kind, owner and key
    def put_item(kind, owner, key, data):  # type: ignore[no-untyped-def]
        """
        Insert or replace one document.  ``kind`` names the feature's
        collection (``"voicemail.message"``), ``owner`` whom it belongs to
        (an extension number, or ``""``), ``key`` its id within the owner;
        ``data`` a JSON-ready dict.  Deferred firing with None.
        """

    def get_item(kind, owner, key):  # type: ignore[no-untyped-def]
        """Deferred firing with the dict stored, or None."""

    def list_items(kind, owner=None, search=None):  # type: ignore[no-untyped-def]
        """
        Deferred firing with ``[(owner, key, data), ...]`` of ``kind``
        (of one owner, or all), ordered by owner then key.  ``search`` keeps
        only documents whose JSON text contains it, case-insensitively.
        """

    def delete_item(kind, owner, key):  # type: ignore[no-untyped-def]
        """Deferred firing True if the document existed."""

    # Small named settings (generated secrets, first-start markers)
    def get_setting(key):  # type: ignore[no-untyped-def]
        """Deferred firing with the string stored under ``key`` or None."""

    def put_setting(key, value):  # type: ignore[no-untyped-def]
        """Store ``value`` (a string) under ``key``."""


class ICodec(IPlugin):
    """
    An audio codec, found like features in :mod:`pbx.plugins`.

    A codec is a factory: every RTP stream gets its own encoder and decoder,
    because G.722 and Opus keep state between frames.  PCM is mono signed
    16-bit (a numpy ``int16`` array) at :attr:`sample_rate`.
    """

    name = Attribute("The rtpmap encoding name: 'PCMU', 'PCMA', 'G722', 'opus'.")
    clock_rate = Attribute("The RTP clock rate in the rtpmap (G.722: 8000; Opus: 48000).")
    sample_rate = Attribute("The PCM rate the codec works at (G.722: 16000).")
    channels = Attribute("Channels in the rtpmap (Opus: 2; all others 1).")
    payload_type = Attribute("The static RTP payload type, or None for a dynamic one.")
    fmtp = Attribute("The a=fmtp value we offer, or None.")

    def new_encoder():  # type: ignore[no-untyped-def]
        """A fresh :class:`IEncoder` for one stream."""

    def new_decoder():  # type: ignore[no-untyped-def]
        """A fresh :class:`IDecoder` for one stream."""


class IEncoder(Interface):
    """Encodes one stream's PCM frames."""

    def encode(pcm):  # type: ignore[no-untyped-def]
        """
        :param pcm: int16 samples at the codec's sample rate (one frame,
            e.g. 20 ms).
        :returns: the RTP payload bytes.
        """


class IDecoder(Interface):
    """Decodes one stream's RTP payloads."""

    def decode(payload):  # type: ignore[no-untyped-def]
        """:returns: int16 samples at the codec's sample rate."""

    def conceal(samples):  # type: ignore[no-untyped-def]
        """
        Audio for a lost frame of ``samples`` samples (packet loss
        concealment; silence is acceptable for codecs without PLC).
        """


class IChannel(Interface):
    """
    The media side of one answered call leg, as an application drives it.

    Every operation that waits returns a Deferred, so an application is an
    ``async def`` that reads top to bottom.  One that waits on a channel
    whose call has ended fails with :class:`pbx.media.channel.HungUp`.
    """

    caller = Attribute(
        "Who called: the authenticated extension, or the From user of a public"
        " caller (``\"\"`` when unknown)."
    )
    caller_name = Attribute("The caller's display name, or ``\"\"``.")
    callee = Attribute("The number dialled.")
    hung_up = Attribute("Whether the call has ended (either side hung up).")
    prompts = Attribute(
        "The :class:`pbx.media.prompts.PromptLibrary` prompt ids are found in;"
        " its ``say_digits`` and friends turn numbers into prompt ids."
    )
    rate = Attribute(
        "The PCM sample rate of the call's codec (8000 for G.711, 16000 for"
        " G.722, 48000 for Opus): what a mix or a recording is sized by."
    )
    mix = Attribute(
        "The N-party mix (:class:`pbx.media.mix.Mix`) this channel has joined,"
        " or None."
    )

    def answer():  # type: ignore[no-untyped-def]
        """
        Answer the call (the signalling side has done so before the
        application runs).

        :returns: a Deferred firing with None.
        """

    def play(items, interrupt=""):  # type: ignore[no-untyped-def]
        """
        Play prompts (ids) or WAV files (paths ending in ``.wav``) in order.

        :param items: the prompt ids and paths.
        :param interrupt: digits that stop playback.
        :returns: a Deferred firing with the interrupting digit, or None once
            the last frame went out.
        :raises RuntimeError: if something is playing already.
        """

    def tone(kind, seconds):  # type: ignore[no-untyped-def]
        """
        Play a call-progress tone.

        :param kind: ``"ringback"``, ``"busy"``, ``"congestion"``, ``"beep"``
            or ``"dial"``.
        :param seconds: how long.
        :returns: a Deferred firing with None once it has played.
        """

    def stop_playing():  # type: ignore[no-untyped-def]
        """Cut off the prompt or tone playing now; its Deferred fires with None."""

    def collect_digits(max_digits=1, timeout=5.0, terminator="#"):  # type: ignore[no-untyped-def]
        """
        Collect the caller's keys (RFC 4733 events, SIP INFO or in-band tones).

        :param max_digits: stop after this many.
        :param timeout: stop after this many seconds without a key.
        :param terminator: a key that stops early (not included), or ``""``.
        :returns: a Deferred firing with the digits (``""`` on timeout).
        """

    def record(path, writer, *, max_seconds=120, silence_timeout=5.0, stop_digits="#", beep=True):  # type: ignore[no-untyped-def]  # noqa: E501
        """
        Record the caller to a WAV file.

        :param path: the file to make.
        :param writer: ``writer(path, rate)`` makes the
            :class:`pbx.media.wav.WavWriter` the frames go to.
        :param max_seconds: the longest recording.
        :param silence_timeout: stop after this many seconds of silence.
        :param stop_digits: keys that stop the recording.
        :param beep: play a beep first.
        :returns: a Deferred firing with a :class:`pbx.media.channel.Recording`.
        """

    def echo(on=True):  # type: ignore[no-untyped-def]
        """Send the caller's own audio back (the echo test), or stop doing so."""

    def bridge(other):  # type: ignore[no-untyped-def]
        """
        Connect this channel's media to ``other``'s, both ways, whatever
        their codecs.  Either channel in a mix leaves it first.

        :param other: another :class:`IChannel`.
        """

    def unbridge():  # type: ignore[no-untyped-def]
        """Undo :meth:`bridge` on both channels."""

    def join(mix):  # type: ignore[no-untyped-def]
        """
        Join an N-party mix: from the next tick the caller's audio goes into
        it and the caller hears everyone else in it.  A prompt or tone
        played meanwhile is heard instead of the mix.  A bridged channel is
        unbridged first; a channel in another mix leaves that one.

        :param mix: the :class:`pbx.media.mix.Mix`.
        :raises pbx.media.channel.HungUp: if the call has ended.
        """

    def leave():  # type: ignore[no-untyped-def]
        """Leave the mix joined, if any (hanging up leaves it too)."""

    def hangup(cause="normal"):  # type: ignore[no-untyped-def]
        """
        End the call from our side.

        :returns: a Deferred firing with None.
        """

    def wait_for_hangup():  # type: ignore[no-untyped-def]
        """:returns: a Deferred firing with None once the call has ended."""
