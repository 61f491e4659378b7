//! OCI images: references, the registry HTTP API v2 client, the layer blob cache, and
//! flattening layers into one tree that becomes an ext4 image.

pub mod apply;
pub mod auth;
pub mod blobs;
pub mod guest;
pub mod import;
pub mod manifest;
pub mod paths;
pub mod reference;
pub mod registry;
pub mod unpack;
