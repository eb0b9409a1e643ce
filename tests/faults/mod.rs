//! A fault-injecting Modbus/TCP gateway for tests (`mod faults;`).
//!
//! [`FaultyGateway`] is a TCP proxy on 127.0.0.1 (port 0) between pqwatch
//! and an upstream Modbus/TCP server (pqwatch's simulator). It parses MBAP
//! frames in both directions (transaction id, protocol id, length, unit id,
//! PDU) and forwards them one request at a time, with one upstream
//! connection per client connection, as an RS-485 gateway would. On command,
//! through a shared [`Control`], it answers chosen requests with a [`Fault`]
//! instead: for the next N requests, for one unit id (N times or until
//! cleared), or always.
//!
//! Every faulty reply that carries register data carries [`POISON`] (the
//! f32 1.0e9, ABCD) instead of the meter's values, so a faulty reply that
//! pqwatch ever accepted shows as an absurd stored value. The one exception
//! is [`Fault::WrongUnitId`], which carries another meter's genuine values:
//! its tell is that those values belong to the other meter.
//!
//! The proxy does not judge pqwatch; it records what it did ([`Injected`])
//! and what it saw ([`ProxyStats`]: connections, client hang-ups, late
//! replies that found the client gone) for the tests to compare with
//! pqwatch's counters, logs and stored data.
#![allow(dead_code)]

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// MBAP header: transaction id (2), protocol id (2), length (2), unit id (1).
pub(crate) const HEADER_LEN: usize = 7;
/// The largest Modbus PDU (Modbus Application Protocol v1.1b3, §4.1).
pub(crate) const MAX_PDU: usize = 253;
/// The largest Modbus/TCP ADU: 7 + 253.
pub(crate) const MAX_ADU: usize = HEADER_LEN + MAX_PDU;
/// Register words of faulty replies: 1.0e9 as an f32, high word first.
pub(crate) const POISON: [u16; 2] = [0x4E6E, 0x6B28];
/// Any stored value at or above this came from a poisoned reply.
pub(crate) const POISON_FLOOR: f64 = 1.0e8;
/// How long the proxy waits for the upstream server's reply.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// One Modbus/TCP frame (ADU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub tid: u16,
    pub protocol: u16,
    pub unit: u8,
    pub pdu: Vec<u8>,
}

impl Frame {
    /// The wire bytes, with the MBAP length computed from the PDU.
    pub(crate) fn encode(&self) -> Vec<u8> {
        self.encode_with_length(self.pdu.len() as u16 + 1)
    }

    /// The wire bytes with a given MBAP length field, true or not.
    pub(crate) fn encode_with_length(&self, length: u16) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + self.pdu.len());
        b.extend_from_slice(&self.tid.to_be_bytes());
        b.extend_from_slice(&self.protocol.to_be_bytes());
        b.extend_from_slice(&length.to_be_bytes());
        b.push(self.unit);
        b.extend_from_slice(&self.pdu);
        b
    }

    pub(crate) fn function(&self) -> u8 {
        self.pdu.first().copied().unwrap_or(0)
    }

    /// (start, count) of a read request (function 3 or 4).
    pub(crate) fn read_range(&self) -> Option<(u16, u16)> {
        match self.pdu.as_slice() {
            [3 | 4, a0, a1, c0, c1] => Some((
                u16::from_be_bytes([*a0, *a1]),
                u16::from_be_bytes([*c0, *c1]),
            )),
            _ => None,
        }
    }
}

/// A read reply PDU: `function`, byte count `2 × words.len()`, the words.
pub(crate) fn registers_pdu(function: u8, words: &[u16]) -> Vec<u8> {
    let mut p = vec![function, (2 * words.len()) as u8];
    for w in words {
        p.extend_from_slice(&w.to_be_bytes());
    }
    p
}

/// `n` words of [`POISON`].
pub(crate) fn poison_words(n: usize) -> Vec<u16> {
    (0..n).map(|k| POISON[k % 2]).collect()
}

/// What to answer instead of the upstream's reply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fault {
    /// Forward the request, hold the (poisoned) reply this long, past the
    /// client's timeout, then send it if the client is still connected.
    Delay(Duration),
    /// Send the first half of a (poisoned) reply, then close the connection.
    DropMidFrame,
    /// A (poisoned) reply whose MBAP length claims 4 bytes more than are
    /// sent; the connection stays open and the next request is served as
    /// usual, so a client that kept waiting would take the next reply's
    /// first bytes as the end of this one.
    Truncated,
    /// A (poisoned) reply whose MBAP length covers 4 bytes more than its
    /// byte count, and those 4 bytes are sent: the start of a following
    /// frame (transaction id + 1, protocol 0), swallowed into this one, as
    /// when a gateway gets the length wrong by the size of what follows.
    LengthOverrun,
    /// A frame longer than any Modbus/TCP ADU: MBAP length 300 (PDU of 299
    /// bytes, more than the 253 allowed).
    OversizedFrame,
    /// A well-formed reply with 2 registers more than asked ("PDU bigger
    /// than asked"): byte count and MBAP length agree with the data.
    ExtraRegisters,
    /// A well-formed reply with 1 register fewer than asked.
    MissingRegisters,
    /// The reply (poisoned) with the transaction id of the *next* request.
    WrongTransactionId,
    /// The request is forwarded to unit `u` instead, and that unit's
    /// genuine reply comes back with unit id `u` in its header.
    WrongUnitId(u8),
    /// An exception response with this code (function | 0x80, code).
    Exception(u8),
    /// 24 pseudo-random bytes (seeded per injection) instead of a reply.
    RandomBytes,
    /// The (poisoned) reply with function 3 and 4 swapped.
    WrongFunctionCode,
    /// The byte count says 2 bytes more than the data that follow (the
    /// MBAP length agrees with what is sent).
    WrongByteCount,
}

impl Fault {
    /// A short stable name (for tables and messages).
    pub(crate) fn name(&self) -> String {
        match self {
            Fault::Delay(d) => format!("delay {d:?}"),
            Fault::DropMidFrame => "drop mid-frame".into(),
            Fault::Truncated => "truncated frame".into(),
            Fault::LengthOverrun => "length overrun (4 bytes past the byte count)".into(),
            Fault::OversizedFrame => "oversized frame (length 300)".into(),
            Fault::ExtraRegisters => "PDU bigger than asked (+2 registers)".into(),
            Fault::MissingRegisters => "PDU smaller than asked (-1 register)".into(),
            Fault::WrongTransactionId => "wrong transaction id".into(),
            Fault::WrongUnitId(u) => format!("wrong unit id (answered by unit {u})"),
            Fault::Exception(c) => format!("exception 0x{c:02X}"),
            Fault::RandomBytes => "random bytes".into(),
            Fault::WrongFunctionCode => "wrong function code".into(),
            Fault::WrongByteCount => "wrong byte count".into(),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The next `n` requests, whatever their unit.
    Next(u32),
    /// Requests to `unit`: the next `times` of them, or all until cleared.
    Unit { unit: u8, times: Option<u32> },
    /// Every request until cleared.
    Always,
}

impl Scope {
    pub(crate) fn unit(unit: u8) -> Scope {
        Scope::Unit { unit, times: None }
    }

    pub(crate) fn unit_times(unit: u8, times: u32) -> Scope {
        Scope::Unit {
            unit,
            times: Some(times),
        }
    }
}

/// One fault the proxy injected.
#[derive(Debug, Clone)]
pub(crate) struct Injected {
    pub at: Instant,
    /// Unix ms when the request was read: a poll's request goes out at its
    /// scheduled instant, so this names the poll the fault hit.
    pub wall_ms: i64,
    /// Which client connection (1 = the first accepted).
    pub connection: u64,
    pub tid: u16,
    pub unit: u8,
    pub fault: Fault,
}

/// What the proxy saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ProxyStats {
    /// Client connections accepted.
    pub accepted: u64,
    /// Client connections that ended because the client closed them.
    pub client_closed: u64,
    /// Requests read from clients.
    pub requests: u64,
    /// Replies forwarded unchanged.
    pub forwarded: u64,
    /// Delayed replies not sent because the client had hung up meanwhile.
    pub late_replies_unsent: u64,
    /// Delayed replies sent to a client that was still connected.
    pub late_replies_sent: u64,
    /// Client connections that could not reach the upstream server.
    pub upstream_failures: u64,
}

#[derive(Debug)]
struct Rule {
    scope: Scope,
    fault: Fault,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    injected: Vec<Injected>,
    stats: ProxyStats,
}

/// The shared control handle of a [`FaultyGateway`]; cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Control(Arc<Mutex<State>>);

impl Control {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().expect("fault control lock")
    }

    /// Answer the requests in `scope` with `fault`. Rules are tried in the
    /// order they were added; the first that matches a request applies.
    pub(crate) fn inject(&self, scope: Scope, fault: Fault) {
        self.state().rules.push(Rule { scope, fault });
    }

    /// Remove every rule; requests are forwarded again.
    pub(crate) fn clear(&self) {
        self.state().rules.clear();
    }

    /// Whether no rule is left (counted rules are removed once used up).
    pub(crate) fn idle(&self) -> bool {
        self.state().rules.is_empty()
    }

    pub(crate) fn injected(&self) -> Vec<Injected> {
        self.state().injected.clone()
    }

    pub(crate) fn injected_count(&self) -> usize {
        self.state().injected.len()
    }

    pub(crate) fn stats(&self) -> ProxyStats {
        self.state().stats
    }

    fn count(&self, f: impl FnOnce(&mut ProxyStats)) {
        f(&mut self.state().stats);
    }

    /// The fault for this request, if any, consuming one use of its rule.
    fn take(&self, connection: u64, req: &Frame) -> Option<Fault> {
        let mut st = self.state();
        st.stats.requests += 1;
        let i = st.rules.iter().position(|r| match r.scope {
            Scope::Next(n) => n > 0,
            Scope::Unit { unit, times } => unit == req.unit && times != Some(0),
            Scope::Always => true,
        })?;
        let rule = &mut st.rules[i];
        let fault = rule.fault.clone();
        let used_up = match &mut rule.scope {
            Scope::Next(n) | Scope::Unit { times: Some(n), .. } => {
                *n -= 1;
                *n == 0
            }
            _ => false,
        };
        if used_up {
            st.rules.remove(i);
        }
        st.injected.push(Injected {
            at: Instant::now(),
            wall_ms: unix_ms(),
            connection,
            tid: req.tid,
            unit: req.unit,
            fault: fault.clone(),
        });
        Some(fault)
    }
}

/// The proxy: bound, serving, stopped on [`stop`](Self::stop) or drop.
pub(crate) struct FaultyGateway {
    addr: SocketAddr,
    control: Control,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FaultyGateway {
    /// Listen on 127.0.0.1, port 0, in front of `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> std::io::Result<FaultyGateway> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let control = Control::default();
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            control.clone(),
            stop.clone(),
        ));
        Ok(FaultyGateway {
            addr,
            control,
            stop,
            task: Some(task),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn control(&self) -> Control {
        self.control.clone()
    }

    /// Stop accepting, close every connection, and wait for the tasks.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for FaultyGateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    control: Control,
    stop: CancellationToken,
) {
    let mut clients = JoinSet::new();
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => {
                let Ok((sock, _)) = accepted else { continue };
                n += 1;
                control.count(|s| s.accepted += 1);
                let (control, stop) = (control.clone(), stop.clone());
                clients.spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = serve_client(n, sock, upstream, control) => {}
                    }
                });
            }
            // Reap finished connections as they end.
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
        }
    }
    // Every connection task watches `stop`; this only waits for them.
    while clients.join_next().await.is_some() {}
}

/// Reads MBAP frames from one direction of a stream, keeping bytes that
/// arrive early (while the proxy waits for something else).
struct FrameReader {
    half: OwnedReadHalf,
    buf: Vec<u8>,
    /// Largest MBAP length accepted from this peer.
    max_length: usize,
}

enum Read {
    Frame(Frame),
    /// The peer closed between frames.
    Closed,
}

impl FrameReader {
    fn new(half: OwnedReadHalf, max_length: usize) -> FrameReader {
        FrameReader {
            half,
            buf: Vec::new(),
            max_length,
        }
    }

    /// Read more bytes into the buffer; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 512];
        let n = self.half.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn next(&mut self) -> std::io::Result<Read> {
        loop {
            if self.buf.len() >= HEADER_LEN {
                let length = u16::from_be_bytes([self.buf[4], self.buf[5]]) as usize;
                if length == 0 || length > self.max_length {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("MBAP length {length}"),
                    ));
                }
                let total = HEADER_LEN - 1 + length;
                if self.buf.len() >= total {
                    let raw: Vec<u8> = self.buf.drain(..total).collect();
                    return Ok(Read::Frame(Frame {
                        tid: u16::from_be_bytes([raw[0], raw[1]]),
                        protocol: u16::from_be_bytes([raw[2], raw[3]]),
                        unit: raw[6],
                        pdu: raw[HEADER_LEN..].to_vec(),
                    }));
                }
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(Read::Closed)
                } else {
                    Err(std::io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A small deterministic generator for [`Fault::RandomBytes`].
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn serve_client(connection: u64, client: TcpStream, upstream: SocketAddr, control: Control) {
    let _ = client.set_nodelay(true);
    let (client_rx, mut client_tx) = client.into_split();
    let mut from_client = FrameReader::new(client_rx, 1 + MAX_PDU);
    let Ok(Ok(up)) = tokio::time::timeout(UPSTREAM_TIMEOUT, TcpStream::connect(upstream)).await
    else {
        control.count(|s| s.upstream_failures += 1);
        return;
    };
    let _ = up.set_nodelay(true);
    let (up_rx, mut up_tx) = up.into_split();
    // Whatever the upstream sends is parsed, never trusted blindly.
    let mut from_up = FrameReader::new(up_rx, u16::MAX as usize);

    loop {
        let req = match from_client.next().await {
            Ok(Read::Frame(f)) => f,
            Ok(Read::Closed) => {
                control.count(|s| s.client_closed += 1);
                return;
            }
            Err(_) => return,
        };
        let fault = control.take(connection, &req);
        let outcome = match fault {
            None => match exchange(&mut up_tx, &mut from_up, &req).await {
                Some(reply) => {
                    control.count(|s| s.forwarded += 1);
                    client_tx.write_all(&reply.encode()).await
                }
                None => return,
            },
            Some(fault) => {
                match inject(
                    connection,
                    &fault,
                    &req,
                    &mut client_tx,
                    &mut from_client,
                    &mut up_tx,
                    &mut from_up,
                    &control,
                )
                .await
                {
                    Step::Continue => Ok(()),
                    Step::Close => return,
                }
            }
        };
        if outcome.is_err() {
            return;
        }
    }
}

/// Send `req` upstream and read its reply.
async fn exchange(
    up_tx: &mut OwnedWriteHalf,
    from_up: &mut FrameReader,
    req: &Frame,
) -> Option<Frame> {
    up_tx.write_all(&req.encode()).await.ok()?;
    match tokio::time::timeout(UPSTREAM_TIMEOUT, from_up.next()).await {
        Ok(Ok(Read::Frame(f))) => Some(f),
        _ => None,
    }
}

enum Step {
    Continue,
    Close,
}

/// A reply to `req` with the right header and [`POISON`] registers.
fn poisoned_reply(req: &Frame) -> Frame {
    let count = req.read_range().map(|r| r.1).unwrap_or(2) as usize;
    Frame {
        tid: req.tid,
        protocol: 0,
        unit: req.unit,
        pdu: registers_pdu(req.function(), &poison_words(count)),
    }
}

#[allow(clippy::too_many_arguments)]
async fn inject(
    connection: u64,
    fault: &Fault,
    req: &Frame,
    client_tx: &mut OwnedWriteHalf,
    from_client: &mut FrameReader,
    up_tx: &mut OwnedWriteHalf,
    from_up: &mut FrameReader,
    control: &Control,
) -> Step {
    let count = req.read_range().map(|r| r.1).unwrap_or(2) as usize;
    let function = req.function();
    let bytes: Vec<u8> = match fault {
        Fault::Delay(d) => {
            // The device is slow, not dead: the upstream sees the request.
            let Some(real) = exchange(up_tx, from_up, req).await else {
                return Step::Close;
            };
            let late = Frame {
                pdu: registers_pdu(real.function(), &poison_words(count)),
                ..real
            };
            let until = tokio::time::Instant::now() + *d;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    n = from_client.fill() => {
                        if !matches!(n, Ok(k) if k > 0) {
                            control.count(|s| {
                                s.late_replies_unsent += 1;
                                s.client_closed += 1;
                            });
                            return Step::Close;
                        }
                    }
                }
            }
            if client_tx.write_all(&late.encode()).await.is_err() {
                control.count(|s| s.late_replies_unsent += 1);
                return Step::Close;
            }
            control.count(|s| s.late_replies_sent += 1);
            return Step::Continue;
        }
        Fault::DropMidFrame => {
            let b = poisoned_reply(req).encode();
            let _ = client_tx.write_all(&b[..b.len() / 2]).await;
            let _ = client_tx.flush().await;
            return Step::Close;
        }
        Fault::Truncated => {
            let r = poisoned_reply(req);
            r.encode_with_length(r.pdu.len() as u16 + 1 + 4)
        }
        Fault::LengthOverrun => {
            let mut r = poisoned_reply(req);
            r.pdu
                .extend_from_slice(&req.tid.wrapping_add(1).to_be_bytes());
            r.pdu.extend_from_slice(&[0, 0]);
            r.encode()
        }
        Fault::OversizedFrame => {
            let mut pdu = vec![function, 0xFE];
            pdu.extend(poison_words(148).iter().flat_map(|w| w.to_be_bytes()));
            pdu.push(0);
            debug_assert_eq!(pdu.len(), 299);
            Frame {
                pdu,
                ..poisoned_reply(req)
            }
            .encode()
        }
        Fault::ExtraRegisters => Frame {
            pdu: registers_pdu(function, &poison_words(count + 2)),
            ..poisoned_reply(req)
        }
        .encode(),
        Fault::MissingRegisters => Frame {
            pdu: registers_pdu(function, &poison_words(count.saturating_sub(1))),
            ..poisoned_reply(req)
        }
        .encode(),
        Fault::WrongTransactionId => Frame {
            tid: req.tid.wrapping_add(1),
            ..poisoned_reply(req)
        }
        .encode(),
        Fault::WrongUnitId(other) => {
            let asked = Frame {
                unit: *other,
                ..req.clone()
            };
            let Some(reply) = exchange(up_tx, from_up, &asked).await else {
                return Step::Close;
            };
            reply.encode()
        }
        Fault::Exception(code) => Frame {
            pdu: vec![function | 0x80, *code],
            ..poisoned_reply(req)
        }
        .encode(),
        Fault::RandomBytes => random_bytes(connection << 16 | u64::from(req.tid), 24),
        Fault::WrongFunctionCode => Frame {
            pdu: registers_pdu(function ^ 0x07, &poison_words(count)),
            ..poisoned_reply(req)
        }
        .encode(),
        Fault::WrongByteCount => {
            let mut pdu = registers_pdu(function, &poison_words(count));
            pdu[1] = pdu[1].wrapping_add(2);
            Frame {
                pdu,
                ..poisoned_reply(req)
            }
            .encode()
        }
    };
    match client_tx.write_all(&bytes).await {
        Ok(()) => Step::Continue,
        Err(_) => Step::Close,
    }
}
