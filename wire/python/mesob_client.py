"""Mesob's protocol from Python: framing and the handshake, by hand; bodies, with the
classes flatc generates from wire/mesob.fbs (`flatc --python`, into mesob/fb/).

Only the schema and wire/README.md went into this file. Example: example.py.

    c = Client("127.0.0.1", 7400, "dev", bytes.fromhex(secret))
    c.create_accounts([dict(id=1, currency="ETB"), dict(id=2, currency="ETB")])
    c.create_transfers([dict(id=10, debit=1, credit=2, amount=5000, currency="ETB")])
    c.lookup_accounts([1, 2])
"""
import collections
import hashlib
import hmac
import socket
import struct
import time

import flatbuffers
from mesob.fb import Ack, Events, Subscribe, Subscribed
from mesob.fb import (Account, AccountTransfers, Auth, BalanceQuery, Balances, CancelOrders, CreateAccounts,
                      CreateTransfers, CustomerOp, CustomerOps, Customers, Deposit, Deposits, EqubOp, EqubOps, Error,
                      FoundAccounts, FoundTransfers, Groups, Hello, HistoryQuery, Id128, InstrumentOp, InstrumentOps,
                      Instruments, LookupAccounts, LookupAccountTransfers, LookupBalances, LookupCustomers,
                      LookupGroups, LookupInstruments, LookupTransfers, Operation, OrderCancel, Payout, PayoutAnswer,
                      PayoutAnswers, PayoutInstructions, Payouts, Price, Prices, Push, Reply, Request, Response,
                      Results, SetAccountStatus, StatusChange, Transfer, Welcome, Order, Orders,
                      OrderAnswer, OrderAnswers, OrderInstructions, LookupOrders, FoundOrders, LookupPositions,
                      FoundPositions, PlacedOrders, Rebalance, RebalanceRequest)

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<IHHQ")  # body bytes, version, kind, request id: 16 bytes
FRAME_BYTES_CEILING = 64 << 20   # the protocol's largest body (wire/README.md "Limits")
PUSHES_KEPT_MAX = 65536          # pushes of a topic kept for a later wait; past it its oldest goes
IDENT = b"MSB1"
HELLO, AUTH, WELCOME, REQUEST, RESPONSE, ERROR, PUSH, PING, PONG = range(1, 10)
SUBSCRIBE, SUBSCRIBED, EVENTS, ACK = range(12, 16)
ACK_IDS_KEPT = 1024  # the latest acks' request ids (an ack_refused Error carries one)

# An event as the server sends it unpacked (wire/README.md "Events"): 96 bytes,
# little-endian, its CRC-32C over the first 92.
EVENT = struct.Struct("<QQQHHIQQQQQQQHHI")
EVENT_FIELDS = ("offset", "lsn", "timestamp", "type", "flags", "currency", "id_lo", "id_hi", "ref_lo", "ref_hi",
                "account_a", "account_b", "amount", "code", "gateway", "crc")


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli), as the engine's event log computes each event's `crc`."""
    c = 0xFFFFFFFF
    t = _CRC32C
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


class DamagedEvent(IOError):
    """An Events frame holding an event whose bytes fail its CRC (damaged between the
    engine's event log and here): the frame is refused whole; .offset names the event."""

    def __init__(self, offset, carried, computed):
        super().__init__("event %d fails its CRC (it carries %08x, its bytes give %08x): damaged between the "
                         "event log and here" % (offset, carried, computed))
        self.offset = offset


class ProtocolError(Exception):
    """An Error frame from the server: .code (wire/README.md) and .message."""

    def __init__(self, code, message):
        super().__init__("server error %d: %s" % (code, message))
        self.code = code
        self.message = message


def currency(code):
    """ISO 4217 letters packed as the engine packs them: 'E' | 'T' << 8 | 'B' << 16."""
    b = code.encode("ascii")
    if len(b) != 3:
        raise ValueError("currency must be three letters: %r" % code)
    return b[0] | b[1] << 8 | b[2] << 16


class Client:
    broken = ""  # (set per connection by _init_state)
    _deadline = None

    def __init__(self, host, port, gateway, secret, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        try:
            self._open(gateway, secret)
        except BaseException:
            self.sock.close()
            raise

    def _init_state(self):
        self.buf = bytearray()
        self.next_id = 1
        self.pushes = {}  # topic -> deque of pushed bodies that arrived while waiting for something else
        self.pushes_dropped = 0  # pushes past PUSHES_KEPT_MAX of their topic that went unread
        # The subscription's frames (Events, and an Error for no request or for one of the
        # latest acks) read while waiting for something else, for next_events.
        self.stream = collections.deque()
        self.ack_ids = collections.deque(maxlen=ACK_IDS_KEPT)
        self.broken = ""  # why the connection can no longer be used (a send failed part way, framing lost)
        self._deadline = None  # while set (time.monotonic()), _fill's receives end by it

    def _open(self, gateway, secret):
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._init_state()
        # The connection's timeout bounds the whole handshake, however slowly it comes.
        timeout = self.sock.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._handshake(gateway, secret, deadline)
        finally:
            self._restore_timeout(timeout)

    def _handshake(self, gateway, secret, deadline):
        kind, _, body = self._read_frame_by(deadline, "no handshake from the server in time")
        if kind != HELLO:
            raise IOError("first frame is kind %d, not hello" % kind)
        hello = Hello.Hello.GetRootAs(body, 0)
        nonce = bytes(hello.Nonce(j) for j in range(hello.NonceLength()))
        mac = hmac.new(secret, nonce, hashlib.sha256).digest()
        b = flatbuffers.Builder(128)
        gid = b.CreateString(gateway)
        macv = b.CreateByteVector(mac)
        Auth.Start(b)
        Auth.AddGatewayId(b, gid)
        Auth.AddMac(b, macv)
        b.Finish(Auth.End(b), IDENT)
        self._send(AUTH, 0, bytes(b.Output()))
        kind, _, body = self._read_frame_by(deadline, "no answer to the log-in in time")
        if kind == ERROR:
            raise self._error(body)
        if kind != WELCOME:
            raise IOError("expected welcome, got kind %d" % kind)
        w = Welcome.Welcome.GetRootAs(body, 0)
        self.session_id = w.SessionId()
        self.roles = w.Roles()
        self.gateway_number = w.GatewayNumber()  # a registered gateway's (its deposits' ids carry it)
        self.frame_bytes_max = w.FrameBytesMax()  # the session's request body limit
        self.shards = w.Shards()  # the engine's shard count (0: a server that does not say)

    def close(self):
        self.sock.close()

    # ---- framing ----------------------------------------------------------------------
    def _send(self, kind, request_id, body):
        """Writes one frame. A send that fails (a timeout, a reset) may have written part of
        it: the stream's framing is lost, so the connection is closed and every later call
        fails at once (make a new Client)."""
        if self.broken:
            raise IOError("the connection is unusable: " + self.broken)
        # A body past the session's limit (Welcome) would be answered frame_too_large and
        # the session closed: refused here, the connection kept.
        limit = getattr(self, "frame_bytes_max", 0)
        if limit and len(body) > limit:
            raise ValueError("a request of %d bytes is past the session's limit of %d (frame_bytes_max)"
                             % (len(body), limit))
        try:
            self.sock.sendall(HEADER.pack(len(body), PROTOCOL_VERSION, kind, request_id) + body)
        except BaseException as e:
            self.broken = "a send failed (%s), perhaps part way through a frame" % (e or type(e).__name__)
            self.sock.close()
            raise

    def _fill(self, n):
        """Reads until n bytes are buffered. A timeout leaves what came buffered: the next
        read goes on from there, the frame whole. Under a deadline (_read_frame_by) each
        receive waits only for the time left: a frame trickling in does not keep a wait
        going past it."""
        while len(self.buf) < n:
            if self._deadline is not None:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("timed out")
                self.sock.settimeout(left)
            chunk = self.sock.recv(max(65536, min(n - len(self.buf), 1 << 20)))
            if not chunk:
                said = [self._error(body) for kind, got, body in getattr(self, "stream", ()) if kind == ERROR and got == 0]
                raise IOError("the server closed the connection" + (" (it said %s)" % said[-1] if said else ""))
            self.buf += chunk

    def _read_frame(self):
        """The next whole frame: (kind, request id, body). Nothing is taken from the buffer
        until the whole frame is in it."""
        if self.broken:
            raise IOError("the connection is unusable: " + self.broken)
        self._fill(HEADER.size)
        size, _version, kind, request_id = HEADER.unpack_from(self.buf, 0)
        if size > FRAME_BYTES_CEILING:
            self.broken = "a frame of %d bytes announced, past the protocol's %d: framing lost" % (
                size, FRAME_BYTES_CEILING)
            self.sock.close()
            raise IOError(self.broken)
        self._fill(HEADER.size + size)
        body = self.buf[HEADER.size:HEADER.size + size]  # (a bytearray's slice is its own copy)
        del self.buf[:HEADER.size + size]
        # Every body the server sends is a Mesob flatbuffer (a pong's is empty): one that is
        # not is refused here, before a reader follows its offsets into garbage.
        if body and kind not in (PING, PONG) and (len(body) < 8 or bytes(body[4:8]) != IDENT or struct.unpack_from("<I", body, 0)[0] >= len(body)):
            raise IOError("a frame of kind %d whose %d-byte body is not a Mesob message (no %r identifier or its "
                          "root past its end)" % (kind, len(body), IDENT.decode()))
        return kind, request_id, body

    def _read_frame_by(self, deadline, what):
        """The next whole frame, read by `deadline` (time.monotonic(); None: each receive
        waits the connection's own timeout) however slowly its bytes come: socket.timeout
        saying `what` past it."""
        self._deadline = deadline
        try:
            return self._read_frame()
        except socket.timeout:
            raise socket.timeout(what) from None
        finally:
            self._deadline = None

    def _restore_timeout(self, timeout):
        """Puts the connection's own timeout back after a wait (not on a closed socket)."""
        if not self.broken:
            self.sock.settimeout(timeout)

    @staticmethod
    def _error(body):
        e = Error.Error.GetRootAs(body, 0)
        return ProtocolError(e.Code(), (e.Message() or b"").decode(errors="replace"))

    def _call(self, op_type, op_offset, builder):
        Request.Start(builder)
        Request.AddOperationType(builder, op_type)
        Request.AddOperation(builder, op_offset)
        builder.Finish(Request.End(builder), IDENT)
        rid = self.next_id
        self.next_id += 1
        self._send(REQUEST, rid, bytes(builder.Output()))
        # The connection's timeout bounds the whole wait for the answer: pushes and events
        # arriving meanwhile do not keep it going.
        timeout = self.sock.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                kind, got, body = self._read_frame_by(deadline, "no answer to request %d within %s s" % (rid, timeout))
                if kind == PUSH:
                    self._keep_push(body)
                    continue
                if self._keep_stream(kind, got, body):
                    continue
                if kind == ERROR and got == 0:
                    raise self._error(body)  # the session's (idle_timeout, slow_reader, ...): it ends
                if got != rid:
                    continue  # this helper keeps one request in flight
                if kind == ERROR:
                    raise self._error(body)
                if kind != RESPONSE:
                    continue
                return Response.Response.GetRootAs(body, 0)
        finally:
            self._restore_timeout(timeout)

    # ---- operations -------------------------------------------------------------------
    def create_accounts(self, accounts):
        """accounts: dicts with id, currency and optionally owner_id, user_data, kind
        (1 wallet .. 5 system), flags. Returns one result code per account (0 = ok)."""
        def put(b, a):
            Account.CreateAccount(b, a["id"], a.get("owner_id", 0), a.get("user_data", 0), 0, 0, 0, 0, 0,
                                  currency(a["currency"]), a.get("kind", 1), a.get("flags", 0), 1, 0, 0)
        return self._results(self._request(CreateAccounts, "Accounts", accounts, 80, put))

    def create_transfers(self, transfers):
        """transfers: dicts with id (int, up to 128 bits), debit, credit, amount (minor
        units), currency and optionally code, flags, user_data, pending_id, timeout_s.
        Returns one result code per transfer (0 = ok)."""
        mask = (1 << 64) - 1
        def put(b, t):
            pid = t.get("pending_id", 0)
            Transfer.CreateTransfer(b, t["id"] & mask, t["id"] >> 64, pid & mask, pid >> 64, t["debit"], t["credit"],
                                    t["amount"], t.get("user_data", 0), 0, currency(t["currency"]),
                                    t.get("timeout_s", 0), t.get("code", 0), t.get("flags", 0), 0)
        return self._results(self._request(CreateTransfers, "Transfers", transfers, 88, put))

    def lookup_accounts(self, ids):
        """Returns a list of dicts (None where the account does not exist)."""
        found = self._lookup_ids(LookupAccounts, ids,
                                 Reply.Reply.FoundAccounts, FoundAccounts.FoundAccounts())
        out = []
        for k in range(found.ResultsLength()):
            if found.Results(k) != 0:
                out.append(None)
                continue
            a = found.Accounts(k)
            out.append(dict(id=a.Id(), owner_id=a.OwnerId(), user_data=a.UserData(), debits_posted=a.DebitsPosted(),
                            credits_posted=a.CreditsPosted(), debits_pending=a.DebitsPending(),
                            credits_pending=a.CreditsPending(), timestamp=a.Timestamp(),
                            currency=currency_letters(a.Currency()), kind=a.Kind(), flags=a.Flags(),
                            status=a.Status(), tier=a.Tier(), status_seq=a.StatusSeq()))
        return out

    OPEN, FROZEN, CLOSED = 1, 2, 3

    def set_account_status(self, changes):
        """Status changes: dicts with account and status (Client.OPEN, FROZEN, CLOSED) and
        optionally seq, the change's number on its account: the account's status_seq + 1
        for the next (lookup_accounts gives status_seq). A numbered change applies once: its
        retry (same seq, same status) is 0 and changes nothing; an older seq is
        status_changed_since (47), one past the next status_seq_ahead (48). seq 0 (the
        default) is an unnumbered change. One result code per change (0 = ok)."""
        def put(b, c):
            StatusChange.CreateStatusChange(b, c["account"], c["status"], 0, c.get("seq", 0))
        return self._results(self._request(SetAccountStatus, "Changes", changes, 16, put))

    def lookup_transfers(self, ids):
        """Transfers by id (ints up to 128 bits): a list of dicts, each the transfer as
        recorded (with its engine timestamp), its result and the posted balances of both
        accounts after it; None where no transfer has the id."""
        mask = (1 << 64) - 1
        def put(b, i):
            Id128.CreateId128(b, i & mask, i >> 64)
        found = self._reply(self._request(LookupTransfers, "Ids", ids, 16, put),
                            Reply.Reply.FoundTransfers, FoundTransfers.FoundTransfers())
        return [None if found.Results(k) != 0 else _record(found.Records(k)) for k in range(found.ResultsLength())]

    def account_history(self, queries):
        """Pages of account histories: queries are dicts with account, limit (1..1,024) and
        optionally cursor (0, the default: newest first; else a page's next_cursor). One
        dict per query: result (0 = ok), records (newest first, as lookup_transfers gives
        them) and next_cursor (0: no older records)."""
        def put(b, q):
            HistoryQuery.CreateHistoryQuery(b, q["account"], q.get("cursor", 0), q["limit"], 0)
        pages = self._reply(self._request(LookupAccountTransfers, "Queries", queries, 24, put),
                            Reply.Reply.AccountTransfers, AccountTransfers.AccountTransfers())
        out = []
        for k in range(pages.PagesLength()):
            p = pages.Pages(k)
            out.append(dict(result=p.Result(), records=[_record(p.Records(j)) for j in range(p.RecordsLength())],
                            next_cursor=p.NextCursor()))
        return out

    def lookup_balances(self, queries):
        """Posted balances as of an engine time: queries are (account, timestamp ns)
        pairs. One dict each: result (0 = ok), debits_posted, credits_posted."""
        def put(b, item):
            account, ts = item
            BalanceQuery.CreateBalanceQuery(b, account, ts)
        found = self._reply(self._request(LookupBalances, "Queries", queries, 16, put),
                            Reply.Reply.Balances, Balances.Balances())
        out = []
        for k in range(found.BalancesLength()):
            x = found.Balances(k)
            out.append(dict(result=x.Result(), debits_posted=x.DebitsPosted(), credits_posted=x.CreditsPosted()))
        return out

    # ---- gateways (wire/README.md, "Deposits") ----------------------------------------
    def deposit(self, deposits):
        """A registered gateway's deposits: dicts with reference (the gateway's own, unique
        per gateway, not 0), wallet, amount, currency and optionally user_data, code.
        One result code per deposit; a retry of a reference returns its first result."""
        def put(b, d):
            Deposit.CreateDeposit(b, d["reference"], d["wallet"], d["amount"], d.get("user_data", 0),
                                  currency(d["currency"]), d.get("code", 0), 0)
        return self._results(self._request(Deposits, "Deposits", deposits, 40, put))

    def payouts(self, payouts):
        """Payouts: dicts with id (the payout id, unique engine-wide), wallet, amount,
        destination (the gateway's reference for where the money goes), currency and rail
        (1 mobile money, 2 card, 3 bank). One result code per payout: 0 means the amount is
        held and the engine carries the payout out through a gateway."""
        def put(b, p):
            Payout.CreatePayout(b, p["id"], p["wallet"], p["amount"], p["destination"], currency(p["currency"]),
                                p["rail"], 0, 0)
        return self._results(self._request(Payouts, "Payouts", payouts, 40, put))

    SETTLED, FAILED = 1, 2
    DECLINED = 1  # a failure's kind: the payment refused, the gateway well (wire/README.md)

    def payout_answers(self, answers):
        """A gateway's answers: dicts with payout_id, attempt, amount, currency, outcome
        (Client.SETTLED or Client.FAILED) and optionally reason and failure (a failed one's
        kind: 0, or Client.DECLINED). One result code each."""
        def put(b, a):
            PayoutAnswer.CreatePayoutAnswer(b, a["payout_id"], a["amount"], currency(a["currency"]), a["attempt"],
                                            a["outcome"], a.get("failure", 0), a.get("reason", 0), 0)
        return self._results(self._request(PayoutAnswers, "Answers", answers, 32, put))

    def payout_instructions(self, timeout=10.0):
        """The next payout instructions pushed to this gateway (topic "payouts"): a list of
        dicts with payout_id, attempt, amount, destination, currency (packed), rail."""
        return self._payout_push("payouts", timeout)

    def payout_cancels(self, timeout=10.0):
        """The next payout cancels pushed to this gateway (topic "payout_cancels": payouts it
        was sent that went elsewhere or were cancelled; answer FAILED if it did not pay and
        now will not, SETTLED if it paid): dicts as payout_instructions gives."""
        return self._payout_push("payout_cancels", timeout)

    def _payout_push(self, topic, timeout):
        ins = PayoutInstructions.PayoutInstructions.GetRootAs(self._await_push(topic, timeout), 0)
        out = []
        for j in range(ins.InstructionsLength()):
            x = ins.Instructions(j)
            out.append(dict(payout_id=x.PayoutId(), attempt=x.Attempt(), amount=x.Amount(),
                            destination=x.Destination(), currency=x.Currency(), rail=x.Rail()))
        return out

    def _await_push(self, topic, timeout):
        """The body of the next push of `topic`, kept or read within `timeout` seconds
        however much else comes meanwhile (socket.timeout past it; the connection's own
        timeout is as it was after). None waits as long as it takes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        before = self.sock.gettimeout()
        # (With a deadline each receive waits for the time left; without one, the socket's
        # own timeout would end the wait: none.)
        self.sock.settimeout(timeout)
        try:
            while not self.pushes.get(topic):
                kind, got, body = self._read_frame_by(deadline, "no %r push within %s s" % (topic, timeout))
                if kind == PUSH:
                    self._keep_push(body)
                elif self._keep_stream(kind, got, body):
                    pass
                elif kind == ERROR and got == 0:
                    raise self._error(body)  # the session's: it ends
        finally:
            self._restore_timeout(before)
        return self.pushes[topic].popleft()

    def ping(self, timeout=10.0):
        """A ping and its pong: keeps a quiet session (one waiting for pushes) past the
        server's idle timeout (5 minutes by default). Pushes meanwhile are kept."""
        rid = self.next_id
        self.next_id += 1
        before = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._send(PING, rid, b"")
            while True:
                kind, got, body = self._read_frame_by(deadline, "no pong within %s s" % timeout)
                if kind == PUSH:
                    self._keep_push(body)
                elif self._keep_stream(kind, got, body):
                    pass
                elif kind == ERROR and got in (0, rid):
                    raise self._error(body)  # the session's, or the ping's (a gateway disabled since login)
                elif kind == PONG and got == rid:
                    return
        finally:
            self._restore_timeout(before)

    def _keep_push(self, body):
        p = Push.Push.GetRootAs(body, 0)
        kept = self.pushes.setdefault((p.Topic() or b"").decode(errors="replace"), collections.deque())
        if len(kept) >= PUSHES_KEPT_MAX:  # a topic nobody waits for does not grow without bound
            kept.popleft()
            self.pushes_dropped += 1
        kept.append(bytearray(p.Body(j) for j in range(p.BodyLength())))

    # ---- events (wire/README.md "Events"; the events_reader role) -------------------------
    def _stream_frame(self, kind, got):
        """The subscription's own frames: Events, and an Error for no request (its end) or
        for one of the latest acks (a refusal)."""
        return kind == EVENTS or (kind == ERROR and (got == 0 or got in self.ack_ids))

    def _keep_stream(self, kind, got, body):
        """Keeps a frame of the subscription read while waiting for something else: its
        Events, an ack's refusal, and (while subscribed) the Error that ends it. True if
        kept."""
        if self._stream_frame(kind, got) and (kind != ERROR or got != 0 or self.subscribed):
            self.stream.append((kind, got, body))
            return True
        return False

    subscribed = False  # a subscription stands on this session, as far as this client knows

    def subscribe(self, name="", from_=0, from_end=False, types=(), accounts=(), gateways=(), window=0, batch_max=0,
                  timeout=10.0):
        """Starts receiving events: a dict of the Subscribed answer (result: 0 ok, or why
        not; message; start, the first offset it will send; oldest kept; end). A named
        subscriber resumes after its last acknowledged offset. `types` lists event type
        numbers (none: every type). Frames are asked for unpacked. A subscription that
        stands drops what an ended one of this session left unread (the server takes a
        subscribe only once none stands): acknowledging those would acknowledge the new
        one's offsets."""
        types = sorted(set(types))
        if any(t < 1 or t > 63 for t in types):
            raise ValueError("event types are 1..63: %r" % types)
        low = sum(1 << t for t in types if t < 32)
        high = sum(1 << (t - 32) for t in types if t >= 32)
        if high:
            low |= 1  # so that a server from before types_high refuses the filter (wire/README.md)
        b = flatbuffers.Builder(256 + 8 * len(accounts) + 4 * len(gateways))
        nm = b.CreateString(name)
        Subscribe.StartAccountsVector(b, len(accounts))
        for a in reversed(list(accounts)):
            b.PrependUint64(a)
        av = b.EndVector()
        Subscribe.StartGatewaysVector(b, len(gateways))
        for g in reversed(list(gateways)):
            b.PrependUint32(g)
        gv = b.EndVector()
        Subscribe.Start(b)
        Subscribe.AddName(b, nm)
        Subscribe.AddFrom_(b, from_)
        Subscribe.AddFromEnd(b, from_end)
        Subscribe.AddTypes(b, low)
        Subscribe.AddTypesHigh(b, high)
        Subscribe.AddAccounts(b, av)
        Subscribe.AddGateways(b, gv)
        Subscribe.AddWindow(b, window)
        Subscribe.AddBatchMax(b, batch_max)
        Subscribe.AddPacked(b, False)
        b.Finish(Subscribe.End(b), IDENT)
        rid = self.next_id
        self.next_id += 1
        before = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        # From the send on, a subscription may stand (the answer may come after a timeout):
        # its end's Error is then the stream's, not the session's. A refusal clears it.
        was_subscribed, self.subscribed = self.subscribed, True
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._send(SUBSCRIBE, rid, bytes(b.Output()))
            while True:
                kind, got, body = self._read_frame_by(deadline, "no answer to the subscription within %s s" % timeout)
                if kind == PUSH:
                    self._keep_push(body)
                elif got == rid and kind == ERROR:
                    self.subscribed = was_subscribed
                    raise self._error(body)
                elif got == rid and kind == SUBSCRIBED:
                    a = Subscribed.Subscribed.GetRootAs(body, 0)
                    answer = dict(result=a.Result(), message=(a.Message() or b"").decode(errors="replace"), start=a.Start(),
                                  oldest=a.Oldest(), end=a.End())
                    if answer["result"] == 0:
                        self.stream.clear()
                        self.ack_ids.clear()
                    else:
                        self.subscribed = was_subscribed  # (subscriber_busy: the one before stands)
                    return answer
                elif self._stream_frame(kind, got):
                    self.stream.append((kind, got, body))  # an earlier subscription's, or the standing one's
        finally:
            self._restore_timeout(before)

    def next_events(self, timeout=10.0):
        """The next Events frame as a dict: events (each a dict of EVENT_FIELDS), next (where
        the next frame continues: ack(next - 1) covers the offsets the filters skipped) and
        end. socket.timeout if none comes within `timeout` seconds (call again); a
        ProtocolError for the Error that ends the subscription (events_truncated,
        subscription_taken, ...) or refuses an ack; DamagedEvent for a frame holding an
        event that fails its CRC (nothing of it is handed out; subscribe again on a new
        connection: a named subscriber gets it again from its last ack)."""
        if self.stream:
            kind, got, body = self.stream.popleft()
        else:
            before = self.sock.gettimeout()
            self.sock.settimeout(timeout)
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                while True:
                    kind, got, body = self._read_frame_by(deadline, "no events within %s s" % timeout)
                    if self._stream_frame(kind, got):
                        break
                    if kind == PUSH:
                        self._keep_push(body)
            finally:
                self._restore_timeout(before)
        if kind == ERROR:
            if got == 0:
                self.subscribed = False  # the server ended it
            raise self._error(body)
        return self._events(body)

    @staticmethod
    def _events(body):
        m = Events.Events.GetRootAs(body, 0)
        if m.PackedLength() != 0 or m.Count() != 0:
            raise IOError("events: packed events, which this client does not ask for")
        n = m.EventsLength()
        out = []
        if n:
            at = m._tab.Vector(m._tab.Offset(4))
            if at + n * EVENT.size > len(body):
                raise IOError("events: %d events past the frame's %d bytes" % (n, len(body)))
            for k in range(n):
                raw = bytes(body[at + k * EVENT.size:at + (k + 1) * EVENT.size])
                e = dict(zip(EVENT_FIELDS, EVENT.unpack(raw)))
                crc = crc32c(raw[:92])
                if crc != e["crc"]:
                    raise DamagedEvent(e["offset"], e["crc"], crc)
                out.append(e)
        return dict(events=out, next=m.Next(), end=m.End())

    def ack(self, offset):
        """Every event up to `offset` is handled (no answer; a refusal comes to next_events)."""
        b = flatbuffers.Builder(64)
        Ack.Start(b)
        Ack.AddOffset(b, offset)
        b.Finish(Ack.End(b), IDENT)
        rid = self.next_id
        self.next_id += 1
        self.ack_ids.append(rid)
        self._send(ACK, rid, bytes(b.Output()))

    # ---- equb groups (wire/README.md; the group's id is its escrow account's) -------------
    EQUB_FLAG = 0x10
    GROUP_NOT_FOUND = 140  # a look-up's result for a group that does not exist
    CREATE, START, LEAVE, BID, DISSOLVE, RETRY, PAYOUT_TO, REPLACE_ACCOUNT, WRITE_OFF = range(1, 10)

    def equb(self, ops):
        """ops: dicts with kind (Client.CREATE .. Client.WRITE_OFF), group and, as the kind
        needs them: wallet, seat, round, amount (leave, bid); wallet, seat, amount (write_off:
        all the seat's debts in an ended group); wallet, seat, rail, destination
        (payout_to: rail 0 pays the seat's payout to its wallet); replaced, by
        (replace_account: the account replaced and the one replacing it); for create: currency,
        contribution, period_ns, fee_account and optionally grace_ns, late_penalty,
        fee_bp, rotation (1 fixed order, 2 lottery, 3 bidding), default_policy (1 pay
        what is there, 2 cover from guarantor, 3 hold), guarantor, organizer,
        max_discount_bp, commission_bp, commission_cap. One result code per op."""
        def put(b, o):
            create = o["kind"] == self.CREATE
            g = (lambda k, d=0: o.get(k, d)) if create else (lambda k, d=0: 0)
            amount = o.get("destination", 0) if o["kind"] == self.PAYOUT_TO else o.get("amount", 0)
            wallet = o.get("wallet", 0)
            if o["kind"] == self.REPLACE_ACCOUNT:
                wallet, amount = o["replaced"], o["by"]
            EqubOp.CreateEqubOp(b, o["group"], wallet, amount, g("fee_account"),
                                g("guarantor"), g("organizer"), g("contribution"), g("period_ns"),
                                g("grace_ns"), g("late_penalty"), g("commission_cap"),
                                currency(o["currency"]) if create else 0, g("fee_bp"), g("max_discount_bp"),
                                g("commission_bp"), g("rotation", 1), g("default_policy", 1), o["kind"],
                                o.get("seat", 0), o.get("round", 0), o.get("rail", 0), 0, 0, [0] * 32)
        return self._results(self._request(EqubOps, "Ops", ops, 152, put))

    def pay_equb(self, id, wallet, group, round, seat, amount, currency_code):
        """A member's payment into its group: round 0 joins (seat 0). Its result code."""
        return self.create_transfers([dict(id=id, debit=wallet, credit=group, amount=amount,
                                           currency=currency_code, flags=self.EQUB_FLAG,
                                           user_data=(round << 32) | seat)])[0]

    def lookup_groups(self, ids):
        """Returns a list of dicts (None where the group does not exist; dict(result=248) for one
        not answered, lookup_reply_full: ask for it alone): phase (1 forming,
        2 active, 3 completed, 4 dissolved), round, round_deadline and round_close (an
        active group's: a contribution after the deadline pays the late penalty; past the
        close an unpaid round closes; engine time in ns, 0 when not active), pot, escrow,
        escrow_expected, held (repaid debts' parts owed to the group, the seats' at the next close), seats
        (wallet, paid, received_round, debt_total and debt_to_group, the part of it owed to
        the group), history (round, seat, revealed hex) and owed (payments the group still
        owes); a seat's payout_rail and destination say where its payout goes (rail 0: its
        wallet)."""
        found = self._lookup_ids(LookupGroups, ids, Reply.Reply.Groups,
                                 Groups.Groups())
        out = []
        for k in range(found.GroupsLength()):
            g = found.Groups(k)
            if g.Result() != 0:  # not found: None; not answered (lookup_reply_full): its code
                out.append(None if g.Result() == self.GROUP_NOT_FOUND else dict(result=g.Result()))
                continue
            seats = [dict(wallet=s.Wallet(), paid=bool(s.Paid()), received_round=s.ReceivedRound(),
                          debt_total=s.DebtTotal(), payout_rail=s.PayoutRail(),
                          destination=g.Destinations(j) if j < g.DestinationsLength() else 0,
                          debt_to_group=g.DebtsToGroup(j) if j < g.DebtsToGroupLength() else 0)
                     for j, s in ((j, g.Seats(j)) for j in range(g.SeatsLength()))]
            history = [dict(round=h.Round(), seat=h.Seat(), revealed=bytes(h.Revealed()).hex())
                       for h in (g.History(j) for j in range(g.HistoryLength()))]
            owed = [dict(debit=p.DebitAccountId(), credit=p.CreditAccountId(), amount=p.Amount(),
                         refused=bool(p.Refused()), refusal=p.Refusal())
                    for p in (g.Owed(j) for j in range(g.OwedLength()))]
            out.append(dict(id=g.Config().GroupId(), phase=g.Phase(), round=g.Round(),
                            round_deadline=g.RoundDeadline(), round_close=g.RoundClose(), pot=g.Pot(),
                            escrow=g.Escrow(), escrow_expected=g.EscrowExpected(), held=g.Held(), seats=seats,
                            history=history, owed=owed))
        return out

    # ---- trading (wire/README.md, "Instruments and prices", "Customers") ----------------
    DEFINE, HALT, RESUME, RESEQUENCE = 1, 2, 3, 4
    CASH_LIKE, BOND, EQUITY, FUND = 1, 2, 3, 4

    def instruments(self, ops):
        """ops: dicts with kind (Client.DEFINE, HALT, RESUME, RESEQUENCE) and id; a definition
        also symbol, cls (Client.EQUITY ...), currency, tick, lot, move_bp, move_window_ms,
        stale_ms, halt_ms; a resequence (an operator's) sequence, which the feed's next
        price must pass (0: any). One result code each."""
        def put(b, o):
            define = o["kind"] == self.DEFINE
            g = (lambda k: o.get(k, 0)) if define else (lambda k: 0)
            sym = o.get("symbol", "").encode("ascii").ljust(16, b"\0") if define else bytes(16)
            tick = o.get("sequence", 0) if o["kind"] == self.RESEQUENCE else g("tick")  # a resequence's sequence
            InstrumentOp.CreateInstrumentOp(b, o["id"], list(sym), tick, g("lot"),
                                            currency(o["currency"]) if define else 0, g("move_bp"),
                                            g("move_window_ms"), g("stale_ms"), g("halt_ms"), o["kind"], g("cls"), 0)
        return self._results(self._request(InstrumentOps, "Ops", ops, 64, put))

    def prices(self, prices):
        """prices: (instrument id, ticks, sequence) tuples; the sequence counts up per
        instrument (the latest again is a repeat). One result code each."""
        def put(b, item):
            i, ticks, seq = item
            Price.CreatePrice(b, i, ticks, seq)
        return self._results(self._request(Prices, "Prices", prices, 24, put))

    def lookup_instruments(self, ids):
        """A list of dicts (None where not listed): symbol, last_ticks, prices, halts,
        reasons (bit 0 halted by hand, 1 price move, 2 stale; 0: it trades) and sequence
        (what the feed's next price must pass; None from a server that does not say)."""
        found = self._lookup_ids(LookupInstruments, ids,
                                 Reply.Reply.Instruments, Instruments.Instruments())
        out = []
        for k in range(found.ResultsLength()):
            if found.Results(k) != 0:
                out.append(None)
                continue
            s = found.Instruments(k)
            d = s.Def_(InstrumentOp.InstrumentOp())
            out.append(dict(id=d.InstrumentId(), symbol=bytes(d.Symbol()).rstrip(b"\0").decode(errors="replace"), lot=d.Lot(),
                            last_ticks=s.LastTicks(), prices=s.Prices(), halts=s.Halts(), reasons=s.Reasons(),
                            sequence=found.Sequences(k) if found.SequencesLength() == found.ResultsLength() else None))
        return out

    NONE, PENDING, VERIFIED, REJECTED = 1, 2, 3, 4
    CONSERVATIVE, MODERATE, AGGRESSIVE = 1, 2, 3

    CUSTOMER_RECORD, CUSTOMER_RESEQUENCE = 0, 1  # a customer op's kind

    def customers(self, ops):
        """A KYC gateway's records: dicts with wallet, kyc (Client.VERIFIED ...), profile
        (Client.MODERATE ...), tier, sequence and optionally reference; or an operator's
        resequence (admin role): kind Client.CUSTOMER_RESEQUENCE, wallet and sequence alone. One
        result each."""
        def put(b, c):
            if c.get("kind", Client.CUSTOMER_RECORD) == Client.CUSTOMER_RESEQUENCE:
                CustomerOp.CreateCustomerOp(b, c["wallet"], 0, 0, 0, 0, Client.CUSTOMER_RESEQUENCE, 0, c["sequence"])
                return
            CustomerOp.CreateCustomerOp(b, c["wallet"], c.get("reference", 0), c["kyc"], c["profile"], c["tier"], 0, 0,
                                        c["sequence"])
        return self._results(self._request(CustomerOps, "Ops", ops, 32, put))

    def lookup_customers(self, wallets):
        """A list of dicts (None where there is no record): kyc, profile, tier,
        outflow_today, sequence."""
        found = self._lookup_ids(LookupCustomers, wallets,
                                 Reply.Reply.Customers, Customers.Customers(), field="Wallets")
        out = []
        for k in range(found.ResultsLength()):
            if found.Results(k) != 0:
                out.append(None)
                continue
            c = found.Customers(k)
            out.append(dict(wallet=c.Wallet(), kyc=c.Kyc(), profile=c.Profile(), tier=c.Tier(),
                            outflow_today=c.OutflowToday(), sequence=c.Sequence()))
        return out

    # ---- orders (wire/README.md, "Orders") ---------------------------------------------
    BUY, SELL = 1, 2
    MARKET, LIMIT = 1, 2
    FILL, REJECT, ACCEPTED = 1, 2, 3

    def orders(self, orders):
        """Orders: dicts with id (unique engine-wide), wallet, instrument, quantity (units,
        whole lots), limit (ticks), currency, side (Client.BUY, SELL), type (Client.MARKET,
        LIMIT) and optionally expires_s. One result code each: 0 means placed (held)."""
        def put(b, o):
            Order.CreateOrder(b, o["id"], o["wallet"], o["instrument"], o["quantity"], o["limit"],
                              currency(o["currency"]), o.get("expires_s", 0), o["side"], o["type"], 0, 0, 0)
        return self._results(self._request(Orders, "Orders", orders, 64, put))

    def order_answers(self, answers):
        """A broker's answers: dicts with order_id and kind (Client.FILL: fill_id, quantity,
        price; Client.REJECT: reason; Client.ACCEPTED: nothing else, the acknowledgement the
        engine's answer timeout waits for), and optionally the instruction's attempt it
        answers. One result code each."""
        def put(b, a):
            OrderAnswer.CreateOrderAnswer(b, a["order_id"], a.get("fill_id", 0), a.get("quantity", 0),
                                          a.get("price", 0), 0, 0, a.get("reason", 0), a["kind"], a.get("attempt", 0))
        return self._results(self._request(OrderAnswers, "Answers", answers, 48, put))

    def order_instructions(self, timeout=10.0):
        """The next order instructions pushed to this broker (topic "orders"): dicts with
        order_id, instrument, quantity (units open), limit, expires_at, kind (1 work, 2
        cancel), side, type."""
        ins = OrderInstructions.OrderInstructions.GetRootAs(self._await_push("orders", timeout), 0)
        out = []
        for j in range(ins.InstructionsLength()):
            x = ins.Instructions(j)
            out.append(dict(order_id=x.OrderId(), instrument=x.InstrumentId(), quantity=x.Quantity(),
                            limit=x.LimitTicks(), expires_at=x.ExpiresAt(), kind=x.Kind(), side=x.Side(), type=x.Type(),
                            attempt=x.Attempt()))
        return out

    def cancel_orders(self, cancels):
        """Cancels of open orders: dicts with order_id and wallet (the order's own). One
        result code each: 0 means the cancel is under way (lookup_orders: cancelling)."""
        def put(b, c):
            OrderCancel.CreateOrderCancel(b, c["order_id"], c["wallet"])
        return self._results(self._request(CancelOrders, "Cancels", cancels, 16, put))

    def rebalance(self, wallet, first_order_id, drift_bp, slippage_bp, expires_s=0):
        """Brings the wallet's portfolio back toward its risk profile's model: market orders
        with ids counting up from first_order_id (keep 128 free). Returns (results,
        orders): one result per order placed, the orders as dicts (id, wallet, instrument,
        quantity, limit, side, type); with no orders, one result saying why (0: nothing to
        do)."""
        def put(b, _):
            RebalanceRequest.CreateRebalanceRequest(b, wallet, first_order_id, drift_bp, slippage_bp, expires_s, 0)
        placed = self._reply(self._request(Rebalance, "Requests", [None], 32, put), Reply.Reply.PlacedOrders,
                             PlacedOrders.PlacedOrders())
        orders = []
        for k in range(placed.OrdersLength()):
            o = placed.Orders(k)
            orders.append(dict(id=o.Id(), wallet=o.Wallet(), instrument=o.InstrumentId(), quantity=o.Quantity(),
                               limit=o.LimitTicks(), side=o.Side(), type=o.Type()))
        return [placed.Results(k) for k in range(placed.ResultsLength())], orders

    def lookup_positions(self, wallets):
        """Each wallet's positions (at most 16 wallets): a list with, per wallet, None when
        the account does not exist, else a list of dicts with instrument, quantity,
        reserved (by open sells), cost (basis) and buying (units open buys may add)."""
        found = self._lookup_ids(LookupPositions, wallets,
                                 Reply.Reply.FoundPositions, FoundPositions.FoundPositions(), field="Wallets")
        out, j = [], 0  # positions come wallet by wallet, in request order
        for k in range(found.ResultsLength()):
            if found.Results(k) != 0:
                out.append(None)
                continue
            mine, last = [], 0  # a wallet's positions come in ascending instrument order
            while (j < found.PositionsLength() and found.Positions(j).Wallet() == wallets[k] and
                   found.Positions(j).InstrumentId() > last):
                p = found.Positions(j)
                last = p.InstrumentId()
                mine.append(dict(instrument=p.InstrumentId(), quantity=p.Quantity(), reserved=p.Reserved(),
                                 cost=p.Cost(), buying=p.Buying()))
                j += 1
            out.append(mine)
        return out

    def lookup_orders(self, ids):
        """A list of dicts (None where not found): state (1 open, 2 filled, 3 rejected, 4
        cancelled, 5 expired), filled, held, paid, fills, broker, cancelling."""
        found = self._lookup_ids(LookupOrders, ids, Reply.Reply.FoundOrders,
                                 FoundOrders.FoundOrders())
        out = []
        for k in range(found.ResultsLength()):
            if found.Results(k) != 0:
                out.append(None)
                continue
            o = found.Orders(k)
            placed = o.Order(Order.Order())
            out.append(dict(id=placed.Id(), wallet=placed.Wallet(), state=o.State(), filled=o.Filled(),
                            held=o.Held(), paid=o.Paid(), fills=o.Fills(), broker=o.Broker(),
                            cancelling=o.Cancelling(), routing=o.Routing(), dead_reason=o.DeadReason(),
                            attempts=o.Attempts()))
        return out

    def _request(self, table, field, items, item_bytes, put):
        """Sends one request of `table` (a module flatc made: Start<field>Vector,
        Add<field>; its name is the operation's) carrying `items`, each written by
        put(builder, item), and returns the response."""
        b = flatbuffers.Builder(256 + item_bytes * len(items))
        getattr(table, "Start%sVector" % field)(b, len(items))
        for item in reversed(items):  # flatbuffers builds vectors back to front
            put(b, item)
        vec = b.EndVector()
        table.Start(b)
        getattr(table, "Add" + field)(b, vec)
        return self._call(getattr(Operation.Operation, table.__name__.rsplit(".", 1)[-1]), table.End(b), b)

    def _lookup_ids(self, request_table, ids, reply_type, reply, field="Ids"):
        """A look-up by u64 ids (accounts, groups, instruments, customers): sends it,
        checks the reply's type and returns the reply table (`reply`, initialised)."""
        return self._reply(self._request(request_table, field, ids, 8, lambda b, i: b.PrependUint64(i)), reply_type,
                           reply)

    @staticmethod
    def _reply(resp, reply_type, reply):
        """The response's reply table as `reply` (initialised), after checking its type."""
        if resp.ReplyType() != reply_type:
            raise IOError("unexpected reply type %d" % resp.ReplyType())
        table = resp.Reply()
        reply.Init(table.Bytes, table.Pos)
        return reply

    @staticmethod
    def _results(resp):
        r = Client._reply(resp, Reply.Reply.Results, Results.Results())
        return [r.Results(k) for k in range(r.ResultsLength())]


def currency_letters(packed):
    """The inverse of currency(): 'ETB' for 'E' | 'T' << 8 | 'B' << 16."""
    return bytes(((packed >> s) & 0xFF) for s in (0, 8, 16)).decode("ascii", "replace")


def _record(r):
    """A TransferRecord as a dict (lookup_transfers, account_history)."""
    t = r.Transfer(Transfer.Transfer())
    tid, pid = t.Id(Id128.Id128()), t.PendingId(Id128.Id128())
    return dict(id=tid.Hi() << 64 | tid.Lo(), pending_id=pid.Hi() << 64 | pid.Lo(), debit=t.DebitAccountId(),
                credit=t.CreditAccountId(), amount=t.Amount(), user_data=t.UserData(), timestamp=t.Timestamp(),
                currency=currency_letters(t.Currency()), timeout_s=t.TimeoutS(), code=t.Code(), flags=t.Flags(),
                result=r.Result(), debit_after_debits_posted=r.DebitAfterDebitsPosted(),
                debit_after_credits_posted=r.DebitAfterCreditsPosted(),
                credit_after_debits_posted=r.CreditAfterDebitsPosted(),
                credit_after_credits_posted=r.CreditAfterCreditsPosted())
