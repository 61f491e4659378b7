//! bangerd library: see main.rs.
