//! Fuzzes `Parser::Github`: it must refuse garbage, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pipemedic::untrusted::Parser::Github.feed(data);
});
