//! Fuzzes the frame decoder with arbitrary bytes: it must never panic, never allocate past its limit, and
//! anything it accepts must re-encode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_proto::frame::{FrameKind, decode, encode};
use strata_proto::{RequestEnvelope, ResponseEnvelope};

const LIMIT: u32 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok((env, used)) = decode::<RequestEnvelope>(data, FrameKind::Request, LIMIT) {
        let again = encode(FrameKind::Request, &env);
        let (back, _) = decode::<RequestEnvelope>(&again, FrameKind::Request, LIMIT).expect("re-encoded request decodes");
        assert_eq!(back, env);
        assert!(used <= data.len());
    }
    if let Ok((env, _)) = decode::<ResponseEnvelope>(data, FrameKind::Response, LIMIT) {
        let again = encode(FrameKind::Response, &env);
        let (back, _) = decode::<ResponseEnvelope>(&again, FrameKind::Response, LIMIT).expect("re-encoded response decodes");
        assert_eq!(back, env);
    }
});
