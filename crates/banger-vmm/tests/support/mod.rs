//! Test support for the Firecracker contract test: [`openapi`] reads Firecracker's own
//! Swagger description and validates requests against it; [`contract_server`] serves it
//! on a Unix socket the way Firecracker's API does.

pub mod contract_server;
pub mod openapi;
