//! The frame format on a brick connection.
//!
//! ```text
//! offset size  field
//!  0      4    magic "CAIR"
//!  4      1    protocol version (1)
//!  5      1    frame kind: 1 request, 2 reply, 3 hello, 4 welcome, 5 refusal, 6 ping, 7 pong
//!  6      2    opcode (fop table position + 1 for request/reply; 0 otherwise), big-endian
//!  8      8    request id, big-endian (replies carry the id of their request)
//! 16      4    control length, big-endian, at most MAX_CONTROL
//! 20      4    payload length, big-endian, at most MAX_PAYLOAD
//! 24      ...  control: bincode (standard config) of the frame's message
//!        ...   payload: the raw bytes of every Payload in the message, in order
//! ```
//!
//! Every length is checked against its limit before a byte of the body is read or any
//! buffer is allocated, and bincode decodes the control part with the same limit. A frame
//! that breaks any rule is a protocol error: the connection that sent it is closed.

use std::io;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{PROTOCOL_VERSION, Reply, RequestEnvelope, WireWalk, collect_payloads, fill_payloads};
use crate::error::{FopError, FopResult};

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"CAIR";
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 24;
/// Largest control part accepted (16 MiB: a readdirplus of many thousand entries fits).
pub const MAX_CONTROL: u32 = 16 << 20;
/// Largest payload section accepted (64 MiB: several maximum-size writes in a compound).
pub const MAX_PAYLOAD: u32 = 64 << 20;

/// What a frame carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum FrameKind {
    /// A [`RequestEnvelope`].
    Request = 1,
    /// A `Result<Reply, FopError>`.
    Reply = 2,
    /// A [`super::Hello`] (client → server, first frame).
    Hello = 3,
    /// A [`super::Welcome`] (server → client).
    Welcome = 4,
    /// A [`super::Refusal`] (server → client, then close).
    Refusal = 5,
    /// Liveness probe (no body).
    Ping = 6,
    /// Answer to a ping (no body).
    Pong = 7,
}

impl FrameKind {
    fn from_u8(v: u8) -> Option<FrameKind> {
        Some(match v {
            1 => FrameKind::Request,
            2 => FrameKind::Reply,
            3 => FrameKind::Hello,
            4 => FrameKind::Welcome,
            5 => FrameKind::Refusal,
            6 => FrameKind::Ping,
            7 => FrameKind::Pong,
            _ => return None,
        })
    }
}

/// Why a frame could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection failed.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame ({0})")]
    Truncated(&'static str),
    /// Not a Cairn frame.
    #[error("bad magic {0:02x?}: not a Cairn brick protocol frame")]
    BadMagic([u8; 4]),
    /// A protocol version this release does not speak.
    #[error("protocol version {0} is not supported (this release speaks {PROTOCOL_VERSION})")]
    Version(u8),
    /// An unknown frame kind.
    #[error("unknown frame kind {0}")]
    Kind(u8),
    /// A length over its limit.
    #[error("{what} length {len} exceeds the limit of {max} bytes")]
    TooLarge {
        /// Which part.
        what: &'static str,
        /// The announced length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The body does not decode, or does not match the header.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// A frame header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    /// What the frame carries.
    pub kind: FrameKind,
    /// The fop opcode (request/reply), else 0.
    pub opcode: u16,
    /// The request id.
    pub id: u64,
    /// Bytes of control part.
    pub control_len: u32,
    /// Bytes of payload.
    pub payload_len: u32,
}

impl Header {
    /// The header's 24 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = PROTOCOL_VERSION;
        b[5] = self.kind as u8;
        b[6..8].copy_from_slice(&self.opcode.to_be_bytes());
        b[8..16].copy_from_slice(&self.id.to_be_bytes());
        b[16..20].copy_from_slice(&self.control_len.to_be_bytes());
        b[20..24].copy_from_slice(&self.payload_len.to_be_bytes());
        b
    }

    /// Parses and checks a header: magic, version, kind and both length limits.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        if b[4] != PROTOCOL_VERSION {
            return Err(FrameError::Version(b[4]));
        }
        let kind = FrameKind::from_u8(b[5]).ok_or(FrameError::Kind(b[5]))?;
        let opcode = u16::from_be_bytes([b[6], b[7]]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[8..16]);
        let control_len = u32::from_be_bytes([b[16], b[17], b[18], b[19]]);
        let payload_len = u32::from_be_bytes([b[20], b[21], b[22], b[23]]);
        if control_len > MAX_CONTROL {
            return Err(FrameError::TooLarge {
                what: "control",
                len: control_len.into(),
                max: MAX_CONTROL.into(),
            });
        }
        if payload_len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge {
                what: "payload",
                len: payload_len.into(),
                max: MAX_PAYLOAD.into(),
            });
        }
        Ok(Header {
            kind,
            opcode,
            id: u64::from_be_bytes(id),
            control_len,
            payload_len,
        })
    }
}

/// A frame read off a connection.
#[derive(Debug)]
pub struct Frame {
    /// The checked header.
    pub header: Header,
    /// The control bytes (bincode).
    pub control: Bytes,
    /// The payload section.
    pub payload: Bytes,
}

/// A frame ready to send: header and control in one buffer, payloads after it.
#[derive(Debug, Clone)]
pub struct OutFrame {
    /// Header followed by the control part (all of it, or up to its first shared piece).
    pub head: Vec<u8>,
    /// The rest of the control part, when large byte strings in it were not copied: pieces
    /// shared with the values they came from, and the encoded bytes between them, in order
    /// (see [`offer_shared`]). Empty for most frames.
    pub control_rest: Vec<Bytes>,
    /// Payload bytes, in order.
    pub payloads: Vec<Bytes>,
}

impl OutFrame {
    /// Every byte of the frame, in order, in one buffer (tests and tools; senders use
    /// [`write_frame`]).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        for b in self.control_rest.iter().chain(&self.payloads) {
            out.extend_from_slice(b);
        }
        out
    }
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ MAX_CONTROL as usize }>()
}

/// Encodes a control value.
pub fn encode_control<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    bincode::serde::encode_to_vec(value, config())
        .map_err(|e| FrameError::Malformed(format!("cannot encode: {e}")))
}

thread_local! {
    /// The control part being decoded on this thread, so that large byte strings in it can
    /// be shared instead of copied (see [`share_decoded`]).
    static DECODING: std::cell::RefCell<Option<Bytes>> = const { std::cell::RefCell::new(None) };
}

/// Puts the previous control part back when a decode ends, however it ends.
struct DecodingGuard(Option<Bytes>);

impl Drop for DecodingGuard {
    fn drop(&mut self) {
        let prev = self.0.take();
        DECODING.with(|d| *d.borrow_mut() = prev);
    }
}

/// A `Bytes` sharing the buffer of the control part being decoded on this thread, for a
/// slice that lies inside it; `None` for any other slice. Deserializers of large byte
/// strings ([`crate::types::Xdata`] values: quick-read carries whole files there) use it to
/// keep the bytes where the frame put them.
pub fn share_decoded(slice: &[u8]) -> Option<Bytes> {
    DECODING.with(|d| {
        let d = d.borrow();
        let buf = d.as_ref()?;
        let start = buf.as_ptr() as usize;
        let at = slice.as_ptr() as usize;
        let inside = at >= start && at.checked_add(slice.len())? <= start + buf.len();
        inside.then(|| buf.slice_ref(slice))
    })
}

/// Decodes a control value; the whole control part must be consumed. Byte strings are
/// borrowed from `bytes` while decoding, never zero-filled and copied: bincode's owned
/// decoder reads each one into a freshly zeroed vector, which for a 512 KiB image carried
/// by quick-read cost a memset and a memcpy in the client.
pub fn decode_control<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, FrameError> {
    let prev = DECODING.with(|d| d.borrow_mut().replace(bytes.clone()));
    let _restore = DecodingGuard(prev);
    let (value, used) = bincode::serde::borrow_decode_from_slice::<T, _>(bytes, config())
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after the control part",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// The header of a frame with `control_len` control bytes and `payloads`, checked against
/// the limits.
fn frame_header(
    kind: FrameKind,
    opcode: u16,
    id: u64,
    control_len: usize,
    payloads: &[Bytes],
) -> Result<Header, FrameError> {
    let control_len = u32::try_from(control_len)
        .ok()
        .filter(|n| *n <= MAX_CONTROL)
        .ok_or(FrameError::TooLarge {
            what: "control",
            len: control_len as u64,
            max: MAX_CONTROL.into(),
        })?;
    let total: usize = payloads.iter().map(Bytes::len).sum();
    let payload_len = u32::try_from(total)
        .ok()
        .filter(|n| *n <= MAX_PAYLOAD)
        .ok_or(FrameError::TooLarge {
            what: "payload",
            len: total as u64,
            max: MAX_PAYLOAD.into(),
        })?;
    Ok(Header {
        kind,
        opcode,
        id,
        control_len,
        payload_len,
    })
}

/// Builds a frame.
pub fn build_frame(
    kind: FrameKind,
    opcode: u16,
    id: u64,
    control: &[u8],
    payloads: Vec<Bytes>,
) -> Result<OutFrame, FrameError> {
    let header = frame_header(kind, opcode, id, control.len(), &payloads)?;
    let mut head = Vec::with_capacity(HEADER_LEN + control.len());
    head.extend_from_slice(&header.encode());
    head.extend_from_slice(control);
    Ok(OutFrame {
        head,
        control_rest: Vec::new(),
        payloads,
    })
}

thread_local! {
    /// While a frame is being encoded on this thread: the large values offered for sharing
    /// that the encoder has not reached yet (see [`offer_shared`]).
    static OFFERED: std::cell::RefCell<Option<Vec<Bytes>>> = const { std::cell::RefCell::new(None) };
}

/// Ends an encode's offers however the encode ends.
struct OfferGuard;

impl Drop for OfferGuard {
    fn drop(&mut self) {
        OFFERED.with(|o| *o.borrow_mut() = None);
    }
}

/// Offers `value` for sharing: a serializer calls it just before writing `value` as a byte
/// string. When a frame is being encoded on this thread, the frame then refers to `value`'s
/// buffer instead of copying it (a brick's quick-read reply carries a whole image in its
/// xdata). The bytes on the wire are the same. Outside an encode it does nothing.
pub fn offer_shared(value: &Bytes) {
    OFFERED.with(|o| {
        if let Some(list) = o.borrow_mut().as_mut() {
            list.push(value.clone());
        }
    });
}

/// The value offered last, if `bytes` are its bytes (the encoder is writing it).
fn take_offer(bytes: &[u8]) -> Option<Bytes> {
    OFFERED.with(|o| {
        let mut o = o.borrow_mut();
        let list = o.as_mut()?;
        let last = list.last()?;
        if last.as_ptr() == bytes.as_ptr() && last.len() == bytes.len() {
            list.pop()
        } else {
            None
        }
    })
}

/// The counting pass: the control part's length, and how much of it will be shared.
#[derive(Default)]
struct CountWriter {
    len: usize,
    shared: usize,
}

impl bincode::enc::write::Writer for CountWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.len += bytes.len();
        if take_offer(bytes).is_some() {
            self.shared += bytes.len();
        }
        Ok(())
    }
}

/// The control part as it is encoded: the buffer being filled (the head, with the header's
/// room in front, until the first shared value), then finished pieces.
struct ControlWriter {
    cur: Vec<u8>,
    head: Option<Vec<u8>>,
    rest: Vec<Bytes>,
}

impl bincode::enc::write::Writer for ControlWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        let Some(shared) = take_offer(bytes) else {
            self.cur.extend_from_slice(bytes);
            return Ok(());
        };
        let done = std::mem::take(&mut self.cur);
        if self.head.is_none() {
            self.head = Some(done);
        } else if !done.is_empty() {
            self.rest.push(Bytes::from(done));
        }
        self.rest.push(shared);
        Ok(())
    }
}

/// Builds a frame whose control part is `value`, with the payloads inside it. The control
/// part is encoded in place after the header, into a buffer sized by a first counting pass,
/// and large byte strings offered by their serializers ([`offer_shared`]) are referred to,
/// not copied: a reply that carries a whole image in its xdata (quick-read) copies none of
/// it before the socket.
pub fn message_frame<T: Serialize + WireWalk>(
    kind: FrameKind,
    opcode: u16,
    id: u64,
    value: &T,
) -> Result<OutFrame, FrameError> {
    let cannot =
        |e: bincode::error::EncodeError| FrameError::Malformed(format!("cannot encode: {e}"));
    OFFERED.with(|o| *o.borrow_mut() = Some(Vec::new()));
    let _end = OfferGuard;
    let mut count = CountWriter::default();
    bincode::serde::encode_into_writer(value, &mut count, config()).map_err(cannot)?;
    let mut w = ControlWriter {
        cur: Vec::with_capacity(HEADER_LEN + count.len.saturating_sub(count.shared)),
        head: None,
        rest: Vec::new(),
    };
    w.cur.resize(HEADER_LEN, 0);
    OFFERED.with(|o| *o.borrow_mut() = Some(Vec::new()));
    bincode::serde::encode_into_writer(value, &mut w, config()).map_err(cannot)?;
    let ControlWriter {
        cur,
        head,
        mut rest,
    } = w;
    let mut head = match head {
        None => cur,
        Some(h) => {
            if !cur.is_empty() {
                rest.push(Bytes::from(cur));
            }
            h
        }
    };
    // The length as encoded (the counting pass only sized the buffer).
    let len = head.len() - HEADER_LEN + rest.iter().map(Bytes::len).sum::<usize>();
    let payloads = collect_payloads(value);
    let header = frame_header(kind, opcode, id, len, &payloads)?;
    if let Some(h) = head.get_mut(..HEADER_LEN) {
        h.copy_from_slice(&header.encode());
    }
    Ok(OutFrame {
        head,
        control_rest: rest,
        payloads,
    })
}

/// Builds a body-less frame (ping, pong).
pub fn empty_frame(kind: FrameKind, id: u64) -> OutFrame {
    let header = Header {
        kind,
        opcode: 0,
        id,
        control_len: 0,
        payload_len: 0,
    };
    OutFrame {
        head: header.encode().to_vec(),
        control_rest: Vec::new(),
        payloads: Vec::new(),
    }
}

/// Writes a frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &OutFrame) -> io::Result<()> {
    w.write_all(&frame.head).await?;
    for p in frame.control_rest.iter().chain(&frame.payloads) {
        w.write_all(p).await?;
    }
    Ok(())
}

/// Reads one frame. `Ok(None)` is a clean end of stream at a frame boundary.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, FrameError> {
    let mut hb = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut hb[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated("header"));
        }
        got += n;
    }
    let header = Header::decode(&hb)?;
    let control = read_exact_bytes(r, header.control_len as usize, "control").await?;
    let payload = read_exact_bytes(r, header.payload_len as usize, "payload").await?;
    Ok(Some(Frame {
        header,
        control,
        payload,
    }))
}

async fn read_exact_bytes<R: AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
    what: &'static str,
) -> Result<Bytes, FrameError> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    // Read into spare capacity: a 512 KiB payload is not zeroed first only to be
    // overwritten.
    let mut buf = BytesMut::with_capacity(len);
    while buf.len() < len {
        let want = len - buf.len();
        let mut part = (&mut buf).limit(want);
        match r.read_buf(&mut part).await {
            Ok(0) => return Err(FrameError::Truncated(what)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(buf.freeze())
}

/// Encodes a request frame.
pub fn request_frame(id: u64, env: &RequestEnvelope) -> Result<OutFrame, FrameError> {
    message_frame(FrameKind::Request, env.req.kind().opcode(), id, env)
}

/// Decodes a request frame, checking that the opcode matches the body.
pub fn decode_request(frame: Frame) -> Result<RequestEnvelope, FrameError> {
    let mut env: RequestEnvelope = decode_control(&frame.control)?;
    if env.req.kind().opcode() != frame.header.opcode {
        return Err(FrameError::Malformed(format!(
            "header opcode {} does not match the body ({})",
            frame.header.opcode,
            env.req.kind()
        )));
    }
    fill_payloads(&mut env, frame.payload).map_err(FrameError::Malformed)?;
    Ok(env)
}

/// Encodes a reply frame for request `id`.
pub fn reply_frame(
    id: u64,
    opcode: u16,
    result: &FopResult<Reply>,
) -> Result<OutFrame, FrameError> {
    message_frame(FrameKind::Reply, opcode, id, result)
}

/// Decodes a reply frame.
pub fn decode_reply(frame: Frame) -> Result<FopResult<Reply>, FrameError> {
    let mut result: FopResult<Reply> = decode_control(&frame.control)?;
    if let Ok(reply) = &result
        && reply.kind().opcode() != frame.header.opcode
    {
        return Err(FrameError::Malformed(format!(
            "reply opcode {} does not match the body ({})",
            frame.header.opcode,
            reply.kind()
        )));
    }
    fill_payloads(&mut result, frame.payload).map_err(FrameError::Malformed)?;
    Ok(result)
}

impl WireWalk for RequestEnvelope {
    fn each_payload(&self, f: &mut dyn FnMut(&crate::types::Payload)) {
        self.req.each_payload(f)
    }
    fn each_payload_mut(&mut self, f: &mut dyn FnMut(&mut crate::types::Payload)) {
        self.req.each_payload_mut(f)
    }
}

impl WireWalk for super::Hello {}
impl WireWalk for super::Welcome {}
impl WireWalk for super::Refusal {}

/// Converts a frame problem into the error a fop reports.
pub fn fop_error(e: &FrameError) -> FopError {
    FopError::new(libc::EPROTO, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fops::FopKind;
    use crate::testing::{sample_reply, sample_request};
    use crate::types::{Cx, Payload};
    use crate::wire::{Batch, Request};
    use proptest::prelude::*;

    async fn roundtrip(out: &OutFrame) -> Frame {
        let bytes = out.to_vec();
        let mut r = &bytes[..];
        let f = read_frame(&mut r).await.unwrap().unwrap();
        assert!(r.is_empty(), "the whole frame is consumed");
        f
    }

    #[tokio::test]
    async fn every_request_and_reply_round_trips() {
        for &kind in FopKind::ALL {
            for seed in [0u64, 1, 5] {
                let env = RequestEnvelope {
                    cx: Cx {
                        uid: 1,
                        gid: 2,
                        pid: 3,
                        lk_owner: 4,
                        client: 5,
                    },
                    req: sample_request(kind, seed),
                };
                let f = roundtrip(&request_frame(77, &env).unwrap()).await;
                assert_eq!(f.header.id, 77);
                assert_eq!(f.header.opcode, kind.opcode());
                assert_eq!(decode_request(f).unwrap(), env, "{kind}");

                let reply = Ok(sample_reply(kind, seed));
                let f = roundtrip(&reply_frame(78, kind.opcode(), &reply).unwrap()).await;
                assert_eq!(decode_reply(f).unwrap(), reply, "{kind}");
            }
        }
        let err: FopResult<Reply> = Err(FopError::new(libc::ENOENT, "gone"));
        let f = roundtrip(&reply_frame(1, 1, &err).unwrap()).await;
        assert_eq!(decode_reply(f).unwrap(), err);
    }

    #[tokio::test]
    async fn payload_bytes_travel_outside_the_control_part() {
        let data = vec![0xAB; 100_000];
        let env = RequestEnvelope {
            cx: Cx::default(),
            req: Request::Write {
                fd: crate::types::Fd::new(crate::types::Gfid::random(), 0),
                offset: 0,
                data: Payload::new(data.clone()),
                xdata: Default::default(),
            },
        };
        let out = request_frame(1, &env).unwrap();
        assert!(
            out.head.len() < 200,
            "control part holds only the length, got {}",
            out.head.len()
        );
        assert_eq!(out.payloads.len(), 1);
        assert_eq!(out.payloads[0].len(), 100_000);
        let f = roundtrip(&out).await;
        let Request::Write { data: got, .. } = decode_request(f).unwrap().req else {
            panic!("not a write")
        };
        assert_eq!(got.bytes().as_ref(), &data[..]);
    }

    /// Frames that arrive a few bytes at a time, back to back, are read whole and one at a
    /// time: a large control part (an image in xdata) and a payload are each filled across
    /// many partial reads, and nothing of the next frame is taken.
    #[tokio::test]
    async fn frames_arriving_in_small_pieces_are_read_exactly() {
        let mut xdata = crate::types::Xdata::new();
        xdata.set(
            "image",
            (0..200_000u32).map(|i| i as u8).collect::<Vec<u8>>(),
        );
        let envs: Vec<RequestEnvelope> = (0..3u8)
            .map(|n| RequestEnvelope {
                cx: Cx::default(),
                req: Request::Write {
                    fd: crate::types::Fd::new(crate::types::Gfid::random(), 0),
                    offset: u64::from(n),
                    data: Payload::new(vec![n; 70_001]),
                    xdata: xdata.clone(),
                },
            })
            .collect();
        let (mut w, mut r) = tokio::io::duplex(7);
        let sent = envs.clone();
        let writer = tokio::spawn(async move {
            for (i, env) in sent.iter().enumerate() {
                write_frame(&mut w, &request_frame(i as u64, env).unwrap())
                    .await
                    .unwrap();
            }
        });
        for (i, env) in envs.iter().enumerate() {
            let f = read_frame(&mut r).await.unwrap().unwrap();
            assert_eq!(f.header.id, i as u64);
            assert_eq!(&decode_request(f).unwrap(), env);
        }
        writer.await.unwrap();
        assert!(
            read_frame(&mut r).await.unwrap().is_none(),
            "nothing left over"
        );
    }

    /// A file carried in a lookup reply's xdata (quick-read) is not copied into the frame
    /// sent, and comes out of the decoder as a view of the received frame's buffer, not a
    /// copy; a small value is copied, so that a cache keeping it never pins the frame. Both
    /// decode to the values sent.
    #[test]
    fn large_xdata_values_share_the_frame_small_ones_are_copied() {
        let image: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let image_sent = Bytes::from(image.clone());
        let mut xdata = crate::types::Xdata::new();
        xdata.set("cairn.quick-read.content", image_sent.clone());
        xdata.set("trusted.afr.pending", vec![7u8; 12]);
        let sent: FopResult<Reply> = Ok(Reply::Lookup(crate::types::Entry {
            iatt: crate::types::Iatt::default(),
            xdata,
        }));
        let out = reply_frame(9, crate::fops::FopKind::Lookup.opcode(), &sent).unwrap();
        let header = Header::decode(out.head[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert!(
            out.control_rest
                .iter()
                .any(|b| b.as_ptr() == image_sent.as_ptr()),
            "the image was copied into the frame"
        );
        let control = Bytes::copy_from_slice(&out.to_vec()[HEADER_LEN..]);
        let frame = Frame {
            header,
            control: control.clone(),
            payload: Bytes::new(),
        };
        let got = decode_reply(frame).unwrap();
        assert_eq!(got, sent);
        let Ok(Reply::Lookup(e)) = got else {
            panic!("not a lookup reply")
        };
        let inside = |b: &Bytes| {
            let start = control.as_ptr() as usize;
            let at = b.as_ptr() as usize;
            at >= start && at + b.len() <= start + control.len()
        };
        let content = &e.xdata.0["cairn.quick-read.content"];
        assert_eq!(content.as_ref(), &image[..]);
        assert!(inside(content), "the image was copied out of the frame");
        assert!(
            !inside(&e.xdata.0["trusted.afr.pending"]),
            "a small value still points into the frame"
        );
        // Outside a decode, nothing is shared.
        assert!(share_decoded(&control).is_none());
    }

    #[test]
    fn header_limits_are_checked_before_reading_the_body() {
        let ok = Header {
            kind: FrameKind::Request,
            opcode: 1,
            id: 1,
            control_len: 10,
            payload_len: 10,
        };
        assert_eq!(Header::decode(&ok.encode()).unwrap(), ok);
        let mut b = ok.encode();
        b[16..20].copy_from_slice(&(MAX_CONTROL + 1).to_be_bytes());
        assert!(matches!(
            Header::decode(&b),
            Err(FrameError::TooLarge {
                what: "control",
                ..
            })
        ));
        let mut b = ok.encode();
        b[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Header::decode(&b),
            Err(FrameError::TooLarge {
                what: "payload",
                ..
            })
        ));
        let mut b = ok.encode();
        b[0] = b'X';
        assert!(matches!(Header::decode(&b), Err(FrameError::BadMagic(_))));
        let mut b = ok.encode();
        b[4] = 9;
        assert!(matches!(Header::decode(&b), Err(FrameError::Version(9))));
        let mut b = ok.encode();
        b[5] = 42;
        assert!(matches!(Header::decode(&b), Err(FrameError::Kind(42))));
    }

    #[tokio::test]
    async fn truncated_frames_are_errors_not_hangs() {
        let env = RequestEnvelope {
            cx: Cx::default(),
            req: sample_request(FopKind::Write, 3),
        };
        let out = request_frame(1, &env).unwrap();
        let bytes = out.to_vec();
        for cut in [1, HEADER_LEN - 1, HEADER_LEN + 1, bytes.len() - 1] {
            let mut r = &bytes[..cut];
            assert!(
                matches!(read_frame(&mut r).await, Err(FrameError::Truncated(_))),
                "cut at {cut}"
            );
        }
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty).await.unwrap().is_none(), "clean EOF");
    }

    #[test]
    fn nested_compounds_are_refused_by_the_decoder() {
        let inner = Request::Compound {
            ops: Batch(vec![sample_request(FopKind::Stat, 1)]),
        };
        let outer = RequestEnvelope {
            cx: Cx::default(),
            req: Request::Compound {
                ops: Batch(vec![inner]),
            },
        };
        let control = Bytes::from(encode_control(&outer).unwrap());
        let e = decode_control::<RequestEnvelope>(&control).unwrap_err();
        assert!(e.to_string().contains("nested"), "{e}");
        // A single level still decodes.
        let flat = RequestEnvelope {
            cx: Cx::default(),
            req: sample_request(FopKind::Compound, 1),
        };
        let control = Bytes::from(encode_control(&flat).unwrap());
        let mut decoded = decode_control::<RequestEnvelope>(&control).unwrap();
        let payload: Vec<u8> = collect_payloads(&flat)
            .iter()
            .flat_map(|b| b.to_vec())
            .collect();
        fill_payloads(&mut decoded, Bytes::from(payload)).unwrap();
        assert_eq!(decoded, flat);
    }

    #[test]
    fn trailing_bytes_after_the_control_part_are_refused() {
        let env = RequestEnvelope {
            cx: Cx::default(),
            req: sample_request(FopKind::Stat, 1),
        };
        let mut control = encode_control(&env).unwrap();
        control.push(0);
        assert!(decode_control::<RequestEnvelope>(&Bytes::from(control)).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes never panic the decoder and never make it allocate more than the
        /// frame holds.
        #[test]
        fn decoding_arbitrary_control_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let bytes = Bytes::from(bytes);
            let _ = decode_control::<RequestEnvelope>(&bytes);
            let _ = decode_control::<FopResult<Reply>>(&bytes);
            let _ = decode_control::<crate::wire::Hello>(&bytes);
        }

        /// Flipping any byte of a valid frame gives an error or a valid frame, never a panic.
        #[test]
        fn corrupted_frames_never_panic(kind_idx in 0..FopKind::ALL.len(), seed in 0u64..8, pos in any::<prop::sample::Index>(), val in any::<u8>()) {
            let kind = FopKind::ALL[kind_idx];
            let env = RequestEnvelope { cx: Cx::default(), req: sample_request(kind, seed) };
            let out = request_frame(1, &env).unwrap();
            let mut bytes = out.to_vec();
            let i = pos.index(bytes.len());
            bytes[i] = val;
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let mut r = &bytes[..];
                if let Ok(Some(f)) = read_frame(&mut r).await {
                    let _ = decode_request(f);
                }
            });
        }
    }
}
