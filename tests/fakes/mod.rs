//! Local stand-ins for outside services, each speaking its documented wire
//! format on 127.0.0.1 so the real client crates can be pointed at them.

pub mod discord;
pub mod slack;
