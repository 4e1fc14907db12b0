//! The CodePipeline stand-in lives in the library (`pipemedic demo` uses it
//! too); tests reach it under the same name as the other fakes.

pub use pipemedic::standin::codepipeline::*;
