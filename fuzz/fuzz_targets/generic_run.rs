//! Fuzzes `Parser::GenericRun`: it must refuse garbage, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pipemedic::untrusted::Parser::GenericRun.feed(data);
});
