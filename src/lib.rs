//! imgbuild builds machine images from a TOML template: it starts a
//! temporary machine, provisions it over SSH, saves it as an image and
//! removes every temporary thing it made.
//!
//! Layout: `template` reads what users write; `pipeline` runs steps and
//! their cleanups; `communicator` speaks SSH; `provisioner` acts through it;
//! `builder` holds one module per platform; `build` runs builds together;
//! `render` shows their events; `cli` is the command line.

pub mod build;
pub mod builder;
pub mod cli;
pub mod communicator;
pub mod error;
pub mod events;
pub mod family;
pub mod fingerprint;
pub mod inventory;
pub mod mask;
pub mod pipeline;
pub mod provisioner;
pub mod render;
pub mod report;
pub mod swept;
pub mod template;
pub mod wait;
