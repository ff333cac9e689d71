//! The catalog as a directory of manifests: what `kglue crawl` and `kglue run` use on a laptop
//! (`--catalog DIR`) in place of the API server.
//!
//! The directory holds Database, Table, Connection and Classifier manifests, in the same YAML that
//! `kubectl apply` takes (several objects per file allowed, other kinds ignored, so a GitOps folder
//! can be used as it is). Tables that kglue creates or updates are written one object per file,
//! named after the object.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kglue_crds::{ClassifierSpec, ConnectionSpec, Database, Table};
use kube::ResourceExt;
use serde_json::Value;

/// What can go wrong reading or writing a catalog directory.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A file or the directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not valid YAML.
    #[error("{path}: not valid YAML: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// An object of a kglue kind does not match its schema.
    #[error("{path}: {kind} {name:?}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// What does not match.
        message: String,
    },
    /// Two objects claim the same catalog name.
    #[error("{first} and {second} both define {what}")]
    Duplicate {
        /// What is defined twice.
        what: String,
        /// Where it is defined first.
        first: PathBuf,
        /// Where it is defined again.
        second: PathBuf,
    },
    /// kglue would have to rewrite a file that holds other objects too.
    #[error("{path} holds several objects; move {what} to a file of its own so kglue can update it")]
    SharedFile {
        /// The file.
        path: PathBuf,
        /// The object to move.
        what: String,
    },
}

/// The catalog a crawl or a job run works against: a directory of manifests (`kglue crawl|run
/// --catalog DIR`), or a namespace (`kglue attempt`, `kglue crawl --namespace`: a snapshot to read,
/// the API server to write; see [`crate::cluster::ClusterCatalog`]). One trait, so that a crawl and
/// a run are each one piece of code wherever they run, and their commit order — data first, then
/// the catalog — and their conflicts are the same in both places.
#[async_trait::async_trait]
pub trait Catalog: Send {
    /// The catalog as read before the work began.
    fn view(&self) -> &DirCatalog;

    /// Where the catalog is, for messages: a directory, or `namespace NAME`.
    fn place(&self) -> String;

    /// Creates or replaces `table`. `existing` is the table as the work read it (`None`: new), so
    /// a writer can leave alone what did not change.
    async fn write_table(&mut self, existing: Option<&Table>, table: Table) -> Result<(), TableWriteError>;

    /// Whether [`Catalog::write_table`] would succeed, changing nothing (a dry run): a job checks
    /// its Tables before it decides to commit, so a conflict fails it with the old data intact.
    async fn check_table(&mut self, existing: Option<&Table>, table: &Table) -> Result<(), TableWriteError>;

    /// Creates a Database that does not exist yet.
    async fn create_database(&mut self, database: Database) -> Result<(), TableWriteError>;

    /// Deletes a Table (one that is already gone is not an error).
    async fn delete_table(&mut self, table: &Table) -> Result<(), TableWriteError>;
}

/// Why a catalog entry could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TableWriteError {
    /// The catalog directory could not be written.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Another field manager (a manifest applied from Git, a crawler) owns fields the change
    /// would overwrite; kglue never forces.
    #[error(
        "table {table}: not written: the change would overwrite fields another field manager owns ({message}); let the job own the table, or change the table's manifest to match"
    )]
    Conflict {
        /// `database.table`.
        table: String,
        /// The API server's message, naming the fields.
        message: String,
    },
    /// The API server refused or failed the write.
    #[error("{what}: {source}")]
    Api {
        /// What was being written, e.g. `table sales.orders`.
        what: String,
        /// The cause.
        source: Box<kube::Error>,
    },
}

impl TableWriteError {
    /// Why the write was refused when someone else declared the entry — a field another field
    /// manager owns, or a manifest file that holds other objects too — so that a crawl reports
    /// it for that table and goes on, in a directory and in a namespace alike.
    pub fn conflict(&self) -> Option<String> {
        match self {
            TableWriteError::Conflict { message, .. } => Some(format!(
                "not written: the change would overwrite fields another manager owns ({message})"
            )),
            TableWriteError::Catalog(shared @ CatalogError::SharedFile { .. }) => {
                Some(format!("not written: {shared}"))
            }
            _ => None,
        }
    }
}

#[async_trait::async_trait]
impl Catalog for DirCatalog {
    fn view(&self) -> &DirCatalog {
        self
    }

    fn place(&self) -> String {
        self.dir().display().to_string()
    }

    async fn write_table(&mut self, _existing: Option<&Table>, table: Table) -> Result<(), TableWriteError> {
        self.save_table(table)?;
        Ok(())
    }

    async fn check_table(&mut self, _existing: Option<&Table>, table: &Table) -> Result<(), TableWriteError> {
        self.table_file(table)?;
        Ok(())
    }

    async fn create_database(&mut self, database: Database) -> Result<(), TableWriteError> {
        DirCatalog::create_database(self, database)?;
        Ok(())
    }

    async fn delete_table(&mut self, table: &Table) -> Result<(), TableWriteError> {
        DirCatalog::delete_table(self, &table.spec.database_name, &table.spec.table_name)?;
        Ok(())
    }
}

/// An object and the file it came from.
#[derive(Debug, Clone)]
struct Entry<T> {
    object: T,
    file: PathBuf,
    /// Whether the object is the only one in its file (so the file can be rewritten).
    alone: bool,
}

impl<T> Entry<T> {
    /// An object of a snapshot, from no file.
    fn in_memory(object: T) -> Self {
        Entry {
            object,
            file: PathBuf::new(),
            alone: true,
        }
    }
}

/// A catalog directory, loaded — or a snapshot of a namespace's catalog held in memory
/// ([`DirCatalog::snapshot`]), so that planning a run reads the catalog the same way wherever it
/// came from.
#[derive(Debug, Clone)]
pub struct DirCatalog {
    /// The directory; `None` for a snapshot, whose changes stay in memory (the cluster writer
    /// applies them to the API server itself).
    dir: Option<PathBuf>,
    databases: Vec<Entry<Database>>,
    tables: Vec<Entry<Table>>,
    connections: BTreeMap<String, ConnectionSpec>,
    classifiers: BTreeMap<String, ClassifierSpec>,
}

impl DirCatalog {
    /// Loads every `*.yaml`/`*.yml` file of `dir` and its subdirectories.
    pub fn load(dir: &Path) -> Result<Self, CatalogError> {
        let mut catalog = DirCatalog {
            dir: Some(dir.to_path_buf()),
            databases: Vec::new(),
            tables: Vec::new(),
            connections: BTreeMap::new(),
            classifiers: BTreeMap::new(),
        };
        for (file, documents) in read_manifests(dir)? {
            let alone = documents.len() == 1;
            for document in documents {
                catalog.add(document, &file, alone)?;
            }
        }
        Ok(catalog)
    }

    /// A catalog held in memory, from objects read elsewhere (the API server). Saving a table
    /// or creating a database changes only the snapshot; no file is written.
    pub fn snapshot(
        databases: Vec<Database>,
        tables: Vec<Table>,
        connections: BTreeMap<String, ConnectionSpec>,
        classifiers: BTreeMap<String, ClassifierSpec>,
    ) -> Self {
        DirCatalog {
            dir: None,
            databases: databases.into_iter().map(Entry::in_memory).collect(),
            tables: tables.into_iter().map(Entry::in_memory).collect(),
            connections,
            classifiers,
        }
    }

    fn add(&mut self, document: Value, file: &Path, alone: bool) -> Result<(), CatalogError> {
        let is_kglue = document["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("kglue.dev/"));
        let kind = document["kind"].as_str().unwrap_or_default().to_string();
        if !is_kglue {
            return Ok(());
        }
        let name = document["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let invalid = |message: String| CatalogError::Invalid {
            path: file.to_path_buf(),
            kind: kind.clone(),
            name: name.clone(),
            message,
        };
        match kind.as_str() {
            "Database" => {
                let database: Database = serde_json::from_value(document).map_err(|e| invalid(e.to_string()))?;
                if let Some(existing) = self.database_entry(&database.spec.database_name) {
                    return Err(CatalogError::Duplicate {
                        what: format!("database {}", database.spec.database_name),
                        first: existing.file.clone(),
                        second: file.to_path_buf(),
                    });
                }
                self.databases.push(Entry {
                    object: database,
                    file: file.to_path_buf(),
                    alone,
                });
            }
            "Table" => {
                let table: Table = serde_json::from_value(document).map_err(|e| invalid(e.to_string()))?;
                if let Some(existing) = self.table_entry(&table.spec.database_name, &table.spec.table_name) {
                    return Err(CatalogError::Duplicate {
                        what: format!("table {}.{}", table.spec.database_name, table.spec.table_name),
                        first: existing.file.clone(),
                        second: file.to_path_buf(),
                    });
                }
                self.tables.push(Entry {
                    object: table,
                    file: file.to_path_buf(),
                    alone,
                });
            }
            "Connection" => {
                let spec = serde_json::from_value(document["spec"].clone()).map_err(|e| invalid(e.to_string()))?;
                self.connections.insert(name, spec);
            }
            "Classifier" => {
                let spec = serde_json::from_value(document["spec"].clone()).map_err(|e| invalid(e.to_string()))?;
                self.classifiers.insert(name, spec);
            }
            _ => {}
        }
        Ok(())
    }

    /// The directory (empty for a snapshot).
    pub fn dir(&self) -> &Path {
        self.dir.as_deref().unwrap_or(Path::new(""))
    }

    fn database_entry(&self, database_name: &str) -> Option<&Entry<Database>> {
        self.databases
            .iter()
            .find(|e| e.object.spec.database_name == database_name)
    }

    fn table_entry(&self, database: &str, table: &str) -> Option<&Entry<Table>> {
        self.tables
            .iter()
            .find(|e| e.object.spec.database_name == database && e.object.spec.table_name == table)
    }

    /// The Database with this Glue name.
    pub fn database(&self, database_name: &str) -> Option<&Database> {
        self.database_entry(database_name).map(|e| &e.object)
    }

    /// The Table with these Glue names.
    pub fn table(&self, database: &str, table: &str) -> Option<&Table> {
        self.table_entry(database, table).map(|e| &e.object)
    }

    /// Every Database.
    pub fn databases(&self) -> impl Iterator<Item = &Database> {
        self.databases.iter().map(|e| &e.object)
    }

    /// Every Table.
    pub fn tables(&self) -> impl Iterator<Item = &Table> {
        self.tables.iter().map(|e| &e.object)
    }

    /// Every Table of a database.
    pub fn tables_in<'a>(&'a self, database: &'a str) -> impl Iterator<Item = &'a Table> + 'a {
        self.tables
            .iter()
            .map(|e| &e.object)
            .filter(move |t| t.spec.database_name == database)
    }

    /// The Connections, by name.
    pub fn connections(&self) -> &BTreeMap<String, ConnectionSpec> {
        &self.connections
    }

    /// The Classifiers, by name.
    pub fn classifiers(&self) -> &BTreeMap<String, ClassifierSpec> {
        &self.classifiers
    }

    /// Adds a Database that does not exist yet, in a file of its own (`<metadata.name>.yaml`).
    pub fn create_database(&mut self, database: Database) -> Result<PathBuf, CatalogError> {
        let file = self.dir().join(format!("{}.yaml", database.name_any()));
        if self.dir.is_some() {
            write_manifest(&file, &database)?;
        }
        self.databases.push(Entry {
            object: database,
            file: file.clone(),
            alone: true,
        });
        Ok(file)
    }

    /// Creates or replaces a Table, writing it to its own file: the file it was loaded from, or
    /// `<metadata.name>.yaml` for a new one. Written to a temporary file first and renamed, so a
    /// crash never leaves a half-written manifest.
    pub fn save_table(&mut self, table: Table) -> Result<PathBuf, CatalogError> {
        let (position, file) = self.table_file(&table)?;
        if self.dir.is_some() {
            write_manifest(&file, &table)?;
        }
        let entry = Entry {
            object: table,
            file: file.clone(),
            alone: true,
        };
        match position {
            Some(i) => self.tables[i] = entry,
            None => self.tables.push(entry),
        }
        Ok(file)
    }

    /// Where [`DirCatalog::save_table`] would write `table` (and its entry, if it exists), or why
    /// it cannot: a file that holds other objects too.
    fn table_file(&self, table: &Table) -> Result<(Option<usize>, PathBuf), CatalogError> {
        let position = self.tables.iter().position(|e| {
            e.object.spec.database_name == table.spec.database_name && e.object.spec.table_name == table.spec.table_name
        });
        match position {
            Some(i) if !self.tables[i].alone => Err(CatalogError::SharedFile {
                path: self.tables[i].file.clone(),
                what: format!("table {}.{}", table.spec.database_name, table.spec.table_name),
            }),
            Some(i) => Ok((position, self.tables[i].file.clone())),
            None => Ok((None, self.dir().join(format!("{}.yaml", table.name_any())))),
        }
    }

    /// Removes a Table and its file (only if the file holds nothing else).
    pub fn delete_table(&mut self, database: &str, table: &str) -> Result<Option<PathBuf>, CatalogError> {
        let Some(position) = self
            .tables
            .iter()
            .position(|e| e.object.spec.database_name == database && e.object.spec.table_name == table)
        else {
            return Ok(None);
        };
        let entry = &self.tables[position];
        if !entry.alone {
            return Err(CatalogError::SharedFile {
                path: entry.file.clone(),
                what: format!("table {database}.{table}"),
            });
        }
        let file = entry.file.clone();
        if self.dir.is_some() {
            std::fs::remove_file(&file).map_err(|source| CatalogError::Io {
                path: file.clone(),
                source,
            })?;
        }
        self.tables.remove(position);
        Ok(Some(file))
    }
}

fn write_manifest<T: serde::Serialize>(file: &Path, object: &T) -> Result<(), CatalogError> {
    let yaml = serde_saphyr::to_string(object).map_err(|e| CatalogError::Yaml {
        path: file.to_path_buf(),
        message: e.to_string(),
    })?;
    let temporary = file.with_extension("yaml.tmp");
    std::fs::write(&temporary, yaml).map_err(|source| CatalogError::Io {
        path: temporary.clone(),
        source,
    })?;
    std::fs::rename(&temporary, file).map_err(|source| CatalogError::Io {
        path: file.to_path_buf(),
        source,
    })
}

/// Every `*.yaml`/`*.yml` file under `dir` (recursively, sorted by path) with its documents, empty
/// documents dropped. kustomize's own `kustomization.yaml` is left out: it is not an object.
pub fn read_manifests(dir: &Path) -> Result<Vec<(PathBuf, Vec<Value>)>, CatalogError> {
    let mut files = Vec::new();
    collect_yaml(dir, &mut files)?;
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).map_err(|source| CatalogError::Io {
                path: file.clone(),
                source,
            })?;
            let documents: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| CatalogError::Yaml {
                path: file.clone(),
                message: e.to_string(),
            })?;
            Ok((file, documents.into_iter().filter(|d| !d.is_null()).collect()))
        })
        .collect()
}

fn collect_yaml(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), CatalogError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CatalogError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let path = entry
            .map_err(|source| CatalogError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .path();
        if path.is_dir() {
            collect_yaml(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && path.file_name().is_some_and(|n| n != "kustomization.yaml")
        {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> PathBuf {
        kglue_crds::crate_dir!().join("../examples/sales-pipeline")
    }

    #[test]
    fn loads_the_example_pipeline() {
        let catalog = DirCatalog::load(&examples()).expect("examples load");
        assert!(catalog.database("sales_raw").is_some());
        assert!(catalog.database("sales_curated").is_some());
        let table = catalog.table("sales_curated", "orders_daily").expect("declared table");
        assert!(table.spec.schema_locked);
        assert_eq!(catalog.tables_in("sales_curated").count(), 1);
        assert!(catalog.connections().contains_key("lake"));
        assert!(catalog.classifiers().contains_key("partner-pipe-csv"));
    }

    #[test]
    fn saves_new_tables_to_their_own_file_and_reloads_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut catalog = DirCatalog::load(dir.path()).expect("empty dir loads");
        let table: Table = serde_json::from_value(serde_json::json!({
            "apiVersion": "kglue.dev/v1alpha1", "kind": "Table",
            "metadata": {"name": "raw.orders"},
            "spec": {"databaseName": "raw", "tableName": "orders",
                     "storage": {"location": "s3://bucket/orders/", "format": "Csv"},
                     "columns": [{"name": "id", "type": "bigint"}]}
        }))
        .expect("valid table");
        let file = catalog.save_table(table.clone()).expect("saved");
        assert_eq!(file, dir.path().join("raw.orders.yaml"));

        let reloaded = DirCatalog::load(dir.path()).expect("reloads");
        assert_eq!(reloaded.table("raw", "orders").map(|t| &t.spec), Some(&table.spec));

        let mut reloaded = reloaded;
        assert_eq!(
            reloaded.delete_table("raw", "orders").expect("deleted"),
            Some(file.clone())
        );
        assert!(!file.exists());
    }

    #[test]
    fn a_snapshot_keeps_changes_in_memory() {
        let examples = DirCatalog::load(&examples()).expect("examples load");
        let table = examples
            .table("sales_curated", "orders_daily")
            .expect("declared table")
            .clone();
        let mut snapshot = DirCatalog::snapshot(
            Vec::new(),
            vec![table.clone()],
            examples.connections().clone(),
            BTreeMap::new(),
        );
        assert!(snapshot.connections().contains_key("lake"));
        let mut changed = table;
        changed.spec.description = Some("changed".into());
        snapshot.save_table(changed.clone()).expect("saved in memory");
        assert_eq!(
            snapshot.table("sales_curated", "orders_daily").map(|t| &t.spec),
            Some(&changed.spec)
        );
        // A snapshot's dir is empty, so a file would land in the working directory.
        assert!(snapshot.dir().as_os_str().is_empty());
        assert_eq!(
            std::fs::read_dir(".")
                .expect("cwd")
                .filter_map(Result::ok)
                .filter(|e| e.file_name() == "sales_curated.orders_daily.yaml")
                .count(),
            0,
            "nothing written to the working directory"
        );
    }

    #[test]
    fn refuses_to_rewrite_a_file_with_other_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("all.yaml"),
            "apiVersion: kglue.dev/v1alpha1\nkind: Table\nmetadata: {name: a}\nspec: {databaseName: raw, tableName: a, storage: {location: 's3://bucket/a/', format: Csv}}\n---\n\
             apiVersion: kglue.dev/v1alpha1\nkind: Table\nmetadata: {name: b}\nspec: {databaseName: raw, tableName: b, storage: {location: 's3://bucket/b/', format: Csv}}\n",
        )
        .expect("write");
        let mut catalog = DirCatalog::load(dir.path()).expect("loads");
        let table = catalog.table("raw", "a").expect("a").clone();
        let error = catalog.save_table(table).expect_err("shared file").to_string();
        assert!(
            error.contains("all.yaml holds several objects; move table raw.a"),
            "{error}"
        );
    }

    #[test]
    fn names_the_file_and_object_that_does_not_fit() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("bad.yaml"),
            "apiVersion: kglue.dev/v1alpha1\nkind: Table\nmetadata: {name: broken}\nspec: {databaseName: raw}\n",
        )
        .expect("write");
        let error = DirCatalog::load(dir.path()).expect_err("invalid").to_string();
        assert!(error.contains("bad.yaml: Table \"broken\": missing field"), "{error}");

        std::fs::write(dir.path().join("bad.yaml"), "kind: [unclosed\n").expect("write");
        let error = DirCatalog::load(dir.path()).expect_err("not yaml").to_string();
        assert!(error.contains("bad.yaml: not valid YAML"), "{error}");
    }

    #[test]
    fn duplicate_tables_are_named_with_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = "apiVersion: kglue.dev/v1alpha1\nkind: Table\nmetadata: {name: X}\nspec: {databaseName: raw, tableName: t, storage: {location: 's3://bucket/t/', format: Csv}}\n";
        std::fs::write(dir.path().join("one.yaml"), table.replace('X', "one")).expect("write");
        std::fs::write(dir.path().join("two.yaml"), table.replace('X', "two")).expect("write");
        let error = DirCatalog::load(dir.path()).expect_err("duplicate").to_string();
        assert!(
            error.contains("one.yaml and") && error.contains("two.yaml both define table raw.t"),
            "{error}"
        );
    }
}
