//! Local stand-ins for outside services that `pipemedic demo` needs on a
//! machine with no credentials, each speaking the service's documented wire
//! format on 127.0.0.1 so the real client crate talks to it over real HTTP.
//! Tests use them too. Never used by `serve`.

pub mod codepipeline;
