//! Local stand-ins for the outside services pipemedic talks to, each on
//! 127.0.0.1:0 and speaking the service's documented wire format, so the
//! real client crates are exercised over real HTTP.

// Each test file uses a different part of a fake's DSL.
#![allow(dead_code)]

pub mod bedrock;
pub mod codepipeline;
pub mod discord;
pub mod github;
pub mod github_actions;
pub mod gitlab;
pub mod opsgenie;
pub mod pagerduty;
pub mod s3;
pub mod sagemaker;
pub mod slack;
