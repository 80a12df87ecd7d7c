//! Host interfaces offered to components, one file per capability. A plugin reaches
//! only what its connector's configuration grants.

pub mod files;
mod log;

use crate::runtime::TaskState;
use crate::runtime::bindings::types;

impl types::Host for TaskState {}
