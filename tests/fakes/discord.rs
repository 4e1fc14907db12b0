//! A stateful stand-in for Discord REST.
