//! Tables for lists: VMs, images, the catalogs, kernels, ports. Plain columns separated by
//! spaces (no borders, so `awk`/`cut` work), one header row in capitals, `-` for an empty
//! cell, no wrapping. The same columns every time, whatever the data.

use banger_api::types::{
    CatalogEntry, ImageInfo, KernelInfo, PortInfo, PublishedPortInfo, VmInfo, VmPortsOutput,
};
use comfy_table::{ContentArrangement, Table, presets};

use crate::render::{age, bytes, mib};

/// Lays out rows under a header.
pub fn grid(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .force_no_tty()
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    let last = header.len().saturating_sub(1);
    for (index, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if index == last { 0 } else { 2 }));
    }
    let mut text = table.trim_fmt();
    text.push('\n');
    text
}

fn or_dash(value: Option<&str>) -> String {
    value
        .filter(|v| !v.is_empty())
        .map_or_else(|| "-".to_string(), str::to_string)
}

/// `vm list`.
pub fn vms(vms: &[VmInfo], now: jiff::Timestamp) -> String {
    let rows = vms
        .iter()
        .map(|vm| {
            vec![
                vm.name.clone(),
                vm.state.to_string(),
                vm.image.clone(),
                vm.vcpus.to_string(),
                mib(vm.memory_mib),
                mib(vm.disk_mib),
                or_dash(vm.address.as_deref()),
                or_dash(vm.workspace.as_ref().map(|w| w.source.as_str())),
                age(&vm.created_at, now),
            ]
        })
        .collect();
    grid(
        &[
            "NAME",
            "STATE",
            "IMAGE",
            "VCPU",
            "MEMORY",
            "DISK",
            "ADDRESS",
            "WORKSPACE",
            "CREATED",
        ],
        rows,
    )
}

/// `image list`.
pub fn images(images: &[ImageInfo], now: jiff::Timestamp) -> String {
    let rows = images
        .iter()
        .map(|image| {
            vec![
                image.name.clone(),
                source_name(image.source).to_string(),
                image.kernel.clone(),
                bytes(image.size_bytes),
                super::approx_bytes(image.disk_bytes),
                short_digest(&image.digest),
                age(&image.created_at, now),
                if image.used_by.is_empty() {
                    "-".to_string()
                } else {
                    image.used_by.join(",")
                },
            ]
        })
        .collect();
    grid(
        &[
            "NAME", "SOURCE", "KERNEL", "SIZE", "ON DISK", "DIGEST", "CREATED", "USED BY",
        ],
        rows,
    )
}

/// `image list --catalog`, `kernel catalog`.
pub fn catalog(entries: &[CatalogEntry]) -> String {
    let rows = entries
        .iter()
        .map(|entry| {
            let mut name = entry.name.clone();
            if entry.default {
                name.push_str(" (default)");
            }
            vec![
                name,
                entry.kind.clone(),
                if entry.pulled { "yes" } else { "no" }.to_string(),
                entry.description.clone(),
            ]
        })
        .collect();
    grid(&["NAME", "KIND", "PULLED", "DESCRIPTION"], rows)
}

/// `kernel list`.
pub fn kernels(kernels: &[KernelInfo], now: jiff::Timestamp) -> String {
    let rows = kernels
        .iter()
        .map(|kernel| {
            vec![
                kernel.name.clone(),
                kernel.version.clone(),
                bytes(kernel.size_bytes),
                age(&kernel.created_at, now),
                if kernel.used_by.is_empty() {
                    "-".to_string()
                } else {
                    kernel.used_by.join(", ")
                },
            ]
        })
        .collect();
    grid(&["NAME", "VERSION", "SIZE", "CREATED", "USED BY"], rows)
}

/// `vm ports`.
pub fn ports(ports: &[PortInfo]) -> String {
    let rows = ports
        .iter()
        .map(|port| {
            vec![
                port.proto.clone(),
                port.port.to_string(),
                port.bind.clone(),
                port.endpoint.clone(),
                or_dash(port.address_endpoint.as_deref()),
                or_dash(port.process.as_deref()),
            ]
        })
        .collect();
    grid(
        &["PROTO", "PORT", "BIND", "ENDPOINT", "ADDRESS", "PROCESS"],
        rows,
    )
}

/// Published ports (`vm port publish`, the first part of `vm ports`).
pub fn published(ports: &[PublishedPortInfo]) -> String {
    let rows = ports
        .iter()
        .map(|port| {
            vec![
                port.host_endpoint.clone(),
                or_dash(port.guest_endpoint.as_deref()),
                port.proto.clone(),
                if port.active { "open" } else { "closed" }.to_string(),
            ]
        })
        .collect();
    grid(&["HOST", "GUEST", "PROTO", "STATE"], rows)
}

/// `vm ports`: what is published, then what listens in the guest, each section only
/// when it has rows.
pub fn vm_ports(output: &VmPortsOutput) -> String {
    let mut text = String::new();
    if !output.published.is_empty() {
        text.push_str(&format!(
            "published on the host:\n{}",
            published(&output.published)
        ));
    }
    if !output.listening.is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!(
            "listening in the guest:\n{}",
            ports(&output.listening)
        ));
    }
    text
}

pub fn source_name(source: banger_api::types::ImageSource) -> &'static str {
    use banger_api::types::ImageSource;
    match source {
        ImageSource::Catalog => "catalog",
        ImageSource::Oci => "oci",
        ImageSource::Registered => "registered",
        ImageSource::Promoted => "promoted",
    }
}

/// `sha256:0123456789ab` (12 hex digits, like `docker images`).
fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algo, hex)) => format!("{algo}:{}", hex.chars().take(12).collect::<String>()),
        None => digest.chars().take(12).collect(),
    }
}

#[cfg(test)]
mod tests;
