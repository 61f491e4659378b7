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
}

const COLUMNS: &str = "name, source, digest, path, size_bytes, kernel, init, created_at";

fn read(row: &Row<'_>) -> rusqlite::Result<(ImageRecord, i64)> {
    // size_bytes is returned separately so its sign is checked outside the closure.
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
        },
        row.get(4)?,
    ))
}

fn decode((mut image, size): (ImageRecord, i64)) -> Result<ImageRecord, StoreError> {
    image.size_bytes = to_u64(|| format!("image {:?}", image.name), "size_bytes", size)?;
    Ok(image)
}

impl Store {
    /// Adds an image or replaces the one with the same name.
    pub fn upsert_image(&self, image: &ImageRecord) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO images ({COLUMNS}) VALUES (:name, :source, :digest, :path, \
                     :size_bytes, :kernel, :init, :created_at) \
                     ON CONFLICT (name) DO UPDATE SET source = excluded.source, \
                     digest = excluded.digest, path = excluded.path, \
                     size_bytes = excluded.size_bytes, kernel = excluded.kernel, \
                     init = excluded.init, created_at = excluded.created_at"
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
                },
            )
            .map_err(sqlite(|| format!("saving image {:?}", image.name)))?;
        Ok(())
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
