//! The `images` table: one row per local root filesystem image.

use rusqlite::{OptionalExtension, Row, named_params};
use serde::{Deserialize, Serialize};

use crate::Store;
use crate::error::{StoreError, sqlite, to_i64, to_u64};

/// A local image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub name: String,
    /// `catalog`, `oci`, `registered` or `promoted` (the API's `ImageSource`).
    pub source: String,
    /// `sha256:<hex>` of the rootfs file.
    pub digest: String,
    /// The ext4 file on the host.
    pub path: String,
    pub size_bytes: u64,
    /// Kernel the image boots with by default.
    pub kernel: String,
    /// The guest's init, e.g. `/sbin/init`.
    pub init: String,
    /// RFC 3339.
    pub created_at: String,
    /// Where it came from: an OCI `reference@digest`, a registered file, a VM; empty
    /// for catalog builds.
    #[serde(default)]
    pub origin: String,
    /// Digests of the cached OCI layers it was built from (kept by `image cache prune`).
    #[serde(default)]
    pub layers: Vec<String>,
}

const COLUMNS: &str =
    "name, source, digest, path, size_bytes, kernel, init, created_at, origin, layers";

fn read(row: &Row<'_>) -> rusqlite::Result<(ImageRecord, i64, String)> {
    // size_bytes and layers are returned separately so they are checked outside the
    // closure.
    Ok((
        ImageRecord {
            name: row.get(0)?,
            source: row.get(1)?,
            digest: row.get(2)?,
            path: row.get(3)?,
            size_bytes: 0,
            kernel: row.get(5)?,
            init: row.get(6)?,
            created_at: row.get(7)?,
            origin: row.get(8)?,
            layers: Vec::new(),
        },
        row.get(4)?,
        row.get(9)?,
    ))
}

fn decode(
    (mut image, size, layers): (ImageRecord, i64, String),
) -> Result<ImageRecord, StoreError> {
    image.size_bytes = to_u64(|| format!("image {:?}", image.name), "size_bytes", size)?;
    image.layers = serde_json::from_str(&layers).map_err(|e| StoreError::Corrupt {
        what: format!("image {:?}", image.name),
        detail: format!("layers: {e}"),
    })?;
    Ok(image)
}

fn layers_json(layers: &[String]) -> String {
    serde_json::to_string(layers).unwrap_or_else(|_| "[]".to_string())
}

impl Store {
    /// Adds an image or replaces the one with the same name.
    pub fn upsert_image(&self, image: &ImageRecord) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO images ({COLUMNS}) VALUES (:name, :source, :digest, :path, \
                     :size_bytes, :kernel, :init, :created_at, :origin, :layers) \
                     ON CONFLICT (name) DO UPDATE SET source = excluded.source, \
                     digest = excluded.digest, path = excluded.path, \
                     size_bytes = excluded.size_bytes, kernel = excluded.kernel, \
                     init = excluded.init, created_at = excluded.created_at, \
                     origin = excluded.origin, layers = excluded.layers"
                ),
                named_params! {
                    ":name": image.name,
                    ":source": image.source,
                    ":digest": image.digest,
                    ":path": image.path,
                    ":size_bytes": to_i64("image size", image.size_bytes)?,
                    ":kernel": image.kernel,
                    ":init": image.init,
                    ":created_at": image.created_at,
                    ":origin": image.origin,
                    ":layers": layers_json(&image.layers),
                },
            )
            .map_err(sqlite(|| format!("saving image {:?}", image.name)))?;
        Ok(())
    }

    /// Adds an image under a name nobody has; `false` (and nothing written) when the
    /// name is taken. The one short write that publishes an imported, registered or
    /// promoted image.
    pub fn insert_image(&self, image: &ImageRecord) -> Result<bool, StoreError> {
        let inserted = self
            .conn
            .execute(
                &format!(
                    "INSERT INTO images ({COLUMNS}) VALUES (:name, :source, :digest, :path, \
                     :size_bytes, :kernel, :init, :created_at, :origin, :layers) \
                     ON CONFLICT (name) DO NOTHING"
                ),
                named_params! {
                    ":name": image.name,
                    ":source": image.source,
                    ":digest": image.digest,
                    ":path": image.path,
                    ":size_bytes": to_i64("image size", image.size_bytes)?,
                    ":kernel": image.kernel,
                    ":init": image.init,
                    ":created_at": image.created_at,
                    ":origin": image.origin,
                    ":layers": layers_json(&image.layers),
                },
            )
            .map_err(sqlite(|| format!("saving image {:?}", image.name)))?;
        Ok(inserted > 0)
    }

    /// The image named `name`, if any.
    pub fn get_image(&self, name: &str) -> Result<Option<ImageRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM images WHERE name = ?1"),
                [name],
                read,
            )
            .optional()
            .map_err(sqlite(|| format!("reading image {name:?}")))?
            .map(decode)
            .transpose()
    }

    /// Every image, by name.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        self.select_all(
            "listing images",
            &format!("SELECT {COLUMNS} FROM images ORDER BY name"),
            [],
            read,
        )?
        .into_iter()
        .map(decode)
        .collect()
    }

    /// Removes an image record; false when there was none.
    pub fn delete_image(&self, name: &str) -> Result<bool, StoreError> {
        let deleted = self
            .conn
            .execute("DELETE FROM images WHERE name = ?1", [name])
            .map_err(sqlite(|| format!("deleting image {name:?}")))?;
        Ok(deleted > 0)
    }
}
