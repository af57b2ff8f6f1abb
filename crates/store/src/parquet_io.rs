//! The Parquet schema of stored calls, and writing and reading whole files.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Decimal128Array, Decimal128Builder, Int32Array,
    Int32Builder, Int64Array, Int64Builder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::DateTime;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::encryption::decrypt::{FileDecryptionProperties, KeyRetriever};
use parquet::encryption::encrypt::FileEncryptionProperties;
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use rust_decimal::Decimal;

use evn_keys::Keyring;
use evn_rating::{BillingMonth, RatedCall};

use crate::StoreError;

/// Scale of `charge_eur`: four decimals, as rated.
const CHARGE_SCALE: i8 = 4;
/// Decimal(18,4): up to 99,999,999,999,999.9999 € per call, more than enough.
const CHARGE_PRECISION: u8 = 18;
/// Rows per row group: large enough for column scans, small enough for bounded reader memory.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 256 * 1024;

/// A stored call: the rated call plus where it came from (provenance for audits and recovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCall {
    pub call: RatedCall,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    /// Format and original record id of a call converted from a switch's own format
    /// (`sources.toml`); None for canonical JSON, whose `cdr_id` is the record's id. Part of
    /// the row so every rewrite (retention holds, erasure) keeps it.
    pub provenance: Option<Provenance>,
}

/// Where a converted call came from: `source_format` / `source_record_id` columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// `sources.toml` format name (`asterisk-csv`, `kazoo-json` …).
    pub format: String,
    /// The record's own id in its source (Asterisk `uniqueid-sequence`, FreeSWITCH `uuid` …).
    pub record_id: String,
}

#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub row_group_rows: usize,
    /// With a keyring, files are written with Parquet modular encryption (AES-GCM, the current
    /// 256-bit key, footer and every column encrypted; the key id in the footer key metadata).
    pub keys: Option<Arc<Keyring>>,
    /// The counselling list version the rows' `counselling` flags were set with (ingest's),
    /// recorded in the file's key-value metadata ([`COUNSELLING_VERSION_KEY`]): the billing
    /// run trusts the flag of a shortened number only when its list is still the same.
    pub counselling_version: Option<String>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
            keys: None,
            counselling_version: None,
        }
    }
}

/// Key-value metadata key of [`WriteOptions::counselling_version`].
pub const COUNSELLING_VERSION_KEY: &str = "evn.counselling_version";

/// What a file says about itself besides its rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileInfo {
    /// [`WriteOptions::counselling_version`]; `None` for files written without it (before
    /// 2026-11-27; erase and retention rewrites keep the original's since 2026-11-28).
    pub counselling_version: Option<String>,
}

/// Hands parquet the key a file names in its footer key metadata (its key id).
struct Retriever(Arc<Keyring>);

impl KeyRetriever for Retriever {
    fn retrieve_key(&self, key_metadata: &[u8]) -> parquet::errors::Result<Vec<u8>> {
        let id = std::str::from_utf8(key_metadata)
            .map_err(|_| ParquetError::General("key metadata is not a key id".into()))?;
        self.0
            .get(id)
            .map(|k| k.bytes().to_vec())
            .map_err(|e| ParquetError::General(e.to_string()))
    }
}

fn encryption(keys: &Keyring) -> Result<Arc<FileEncryptionProperties>, ParquetError> {
    let key = keys.current();
    FileEncryptionProperties::builder(key.bytes().to_vec())
        .with_footer_key_metadata(key.id().as_bytes().to_vec())
        .build()
}

/// Parquet files with an encrypted footer end in `PARE` instead of `PAR1`.
fn has_encrypted_footer(file: &mut File) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut tail = [0u8; 4];
    file.seek(SeekFrom::End(-4)).is_ok()
        && file.read_exact(&mut tail).is_ok()
        && file.seek(SeekFrom::Start(0)).is_ok()
        && &tail == b"PARE"
}

/// The Arrow schema of every file under `cdrs/` (INTERFACES.md §3 plus provenance columns).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("cdr_id", DataType::Utf8, false),
        Field::new("switch_id", DataType::Utf8, false),
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("calling_number", DataType::Utf8, false),
        Field::new("called_number", DataType::Utf8, false),
        Field::new(
            "start_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("duration_s", DataType::Int64, false),
        Field::new("zone", DataType::Utf8, false),
        Field::new(
            "charge_eur",
            DataType::Decimal128(CHARGE_PRECISION, CHARGE_SCALE),
            false,
        ),
        Field::new("plan", DataType::Utf8, false),
        Field::new("shortened", DataType::Boolean, false),
        Field::new("counselling", DataType::Boolean, false),
        Field::new("source_topic", DataType::Utf8, false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("source_offset", DataType::Int64, false),
        // Appended last and nullable: files written before they existed read the same, and
        // canonical JSON records have no other format or id.
        Field::new("source_format", DataType::Utf8, true),
        Field::new("source_record_id", DataType::Utf8, true),
    ]))
}

/// Stored calls as Parquet-ready columns: what ingest buffers instead of one [`StoredCall`] per
/// row. A row costs its string bytes plus a few fixed-width values here, where a
/// `StoredCall` costs a struct and nine heap strings, each allocated, moved and freed again.
pub struct CallColumns {
    cdr_id: StringBuilder,
    switch_id: StringBuilder,
    customer_id: StringBuilder,
    calling: StringBuilder,
    called: StringBuilder,
    start: TimestampMicrosecondBuilder,
    duration: Int64Builder,
    zone: StringBuilder,
    charge: Decimal128Builder,
    plan: StringBuilder,
    shortened: BooleanBuilder,
    counselling: BooleanBuilder,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    format: StringBuilder,
    record_id: StringBuilder,
    /// Rows without provenance not yet appended to `format` and `record_id`: canonical rows
    /// have none, and appending two nulls a row, one at a time, was 2 % of ingest's CPU.
    no_provenance: usize,
}

/// Bytes of a row's fixed-width values and string offsets in [`CallColumns`].
const FIXED_ROW_BYTES: usize = 9 * 4 + 8 + 8 + 16 + 4 + 8 + 1;

impl Default for CallColumns {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl CallColumns {
    pub fn with_capacity(n: usize) -> Self {
        CallColumns {
            cdr_id: StringBuilder::with_capacity(n, n * 20),
            switch_id: StringBuilder::with_capacity(n, n * 6),
            customer_id: StringBuilder::with_capacity(n, n * 6),
            calling: StringBuilder::with_capacity(n, n * 14),
            called: StringBuilder::with_capacity(n, n * 14),
            start: TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
            duration: Int64Builder::with_capacity(n),
            zone: StringBuilder::with_capacity(n, n * 8),
            charge: Decimal128Builder::with_capacity(n)
                .with_precision_and_scale(CHARGE_PRECISION, CHARGE_SCALE)
                .expect("Decimal(18,4) is valid"),
            plan: StringBuilder::with_capacity(n, n * 12),
            shortened: BooleanBuilder::with_capacity(n),
            counselling: BooleanBuilder::with_capacity(n),
            topic: StringBuilder::with_capacity(n, n * 8),
            partition: Int32Builder::with_capacity(n),
            offset: Int64Builder::with_capacity(n),
            format: StringBuilder::new(),
            record_id: StringBuilder::new(),
            no_provenance: 0,
        }
    }

    /// Appends one row; returns the bytes it added (its strings and fixed-width values), the
    /// figure ingest's memory cap counts.
    pub fn push(
        &mut self,
        c: &RatedCall,
        topic: &str,
        partition: i32,
        offset: i64,
        provenance: Option<&Provenance>,
    ) -> usize {
        let mut bytes = FIXED_ROW_BYTES;
        match provenance {
            Some(p) => {
                self.append_no_provenance();
                self.format.append_value(&p.format);
                self.record_id.append_value(&p.record_id);
                bytes += p.format.len() + p.record_id.len();
            }
            None => self.no_provenance += 1,
        }
        for (b, v) in [
            (&mut self.cdr_id, &c.cdr_id),
            (&mut self.switch_id, &c.switch_id),
            (&mut self.customer_id, &c.customer_id),
            (&mut self.calling, &c.calling_number),
            (&mut self.called, &c.called_number),
            (&mut self.zone, &c.zone),
            (&mut self.plan, &c.plan),
        ] {
            b.append_value(v);
            bytes += v.len();
        }
        self.topic.append_value(topic);
        bytes += topic.len();
        self.start.append_value(c.start_time.timestamp_micros());
        self.duration.append_value(c.duration_s);
        let mut amount = c.charge_eur;
        amount.rescale(CHARGE_SCALE as u32);
        self.charge.append_value(amount.mantissa());
        self.shortened.append_value(c.shortened);
        self.counselling.append_value(c.counselling);
        self.partition.append_value(partition);
        self.offset.append_value(offset);
        bytes
    }

    pub fn push_stored(&mut self, r: &StoredCall) -> usize {
        self.push(
            &r.call,
            &r.source_topic,
            r.source_partition,
            r.source_offset,
            r.provenance.as_ref(),
        )
    }

    fn append_no_provenance(&mut self) {
        self.format.append_nulls(self.no_provenance);
        self.record_id.append_nulls(self.no_provenance);
        self.no_provenance = 0;
    }

    /// The rows so far as one batch; the builder is empty afterwards.
    pub fn finish(&mut self) -> CallBatch {
        self.append_no_provenance();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.cdr_id.finish()),
            Arc::new(self.switch_id.finish()),
            Arc::new(self.customer_id.finish()),
            Arc::new(self.calling.finish()),
            Arc::new(self.called.finish()),
            Arc::new(self.start.finish()),
            Arc::new(self.duration.finish()),
            Arc::new(self.zone.finish()),
            Arc::new(self.charge.finish()),
            Arc::new(self.plan.finish()),
            Arc::new(self.shortened.finish()),
            Arc::new(self.counselling.finish()),
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.format.finish()),
            Arc::new(self.record_id.finish()),
        ];
        CallBatch(
            RecordBatch::try_new(schema(), columns)
                .expect("the builders match the schema, column for column"),
        )
    }
}

/// Stored calls in the schema of [`schema`], ready to be written: made only by
/// [`CallColumns::finish`] or [`CallBatch::from_rows`].
#[derive(Debug, Clone)]
pub struct CallBatch(RecordBatch);

impl CallBatch {
    pub fn from_rows(rows: &[StoredCall]) -> CallBatch {
        let mut columns = CallColumns::with_capacity(rows.len());
        for r in rows {
            columns.push_stored(r);
        }
        columns.finish()
    }

    pub fn num_rows(&self) -> usize {
        self.0.num_rows()
    }
}

/// Writes `rows` to `path` (zstd, but for low-cardinality columns), fsyncs it, and returns the
/// byte size. The caller renames it into place; a reader never sees this file half-written.
pub fn write_file(
    path: &Path,
    rows: &[StoredCall],
    options: WriteOptions,
) -> Result<u64, StoreError> {
    write_batch(path, &CallBatch::from_rows(rows), options)
}

/// [`write_file`] for rows already in columns.
pub fn write_batch(
    path: &Path,
    batch: &CallBatch,
    options: WriteOptions,
) -> Result<u64, StoreError> {
    let file = File::create(path).map_err(|e| StoreError::io(path, e))?;
    let file = write_to(path, file, batch, options)?;
    file.sync_all().map_err(|e| StoreError::io(path, e))?;
    let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
    Ok(len)
}

/// The bytes of the Parquet file [`write_file`] would write, for an object store PUT; `name`
/// is for error messages only.
pub fn encode_file(
    name: &Path,
    rows: &[StoredCall],
    options: WriteOptions,
) -> Result<Vec<u8>, StoreError> {
    encode_batch(name, &CallBatch::from_rows(rows), options)
}

/// [`encode_file`] for rows already in columns.
pub fn encode_batch(
    name: &Path,
    batch: &CallBatch,
    options: WriteOptions,
) -> Result<Vec<u8>, StoreError> {
    write_to(name, Vec::new(), batch, options)
}

fn write_to<W: std::io::Write + Send>(
    path: &Path,
    sink: W,
    batch: &CallBatch,
    options: WriteOptions,
) -> Result<W, StoreError> {
    let pq = |source| StoreError::Parquet {
        path: path.to_owned(),
        source,
    };
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("level 1 is valid"),
        ))
        .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
        // Unique per row: a dictionary of them is only a second copy of the values, and
        // building it (hashing every value) was 2.5 % of ingest's CPU (perf, issue #7).
        // Dialled numbers are nearly so across a file of many customers: without a dictionary
        // the ingest benchmark's files were 6 % smaller at the same CPU. Customers and their
        // lines repeat within a file, but plain values under zstd still beat a dictionary of
        // them (callgrind, 200,000 CDRs in 2,500-row files: with 20,000 customers 2.1 % fewer
        // instructions and 11 % smaller files; with 500, 0.6 % and 3 %).
        .set_column_dictionary_enabled(ColumnPath::from("cdr_id"), false)
        .set_column_dictionary_enabled(ColumnPath::from("called_number"), false)
        .set_column_dictionary_enabled(ColumnPath::from("customer_id"), false)
        .set_column_dictionary_enabled(ColumnPath::from("calling_number"), false)
        .set_column_dictionary_enabled(ColumnPath::from("start_time"), false)
        .set_column_dictionary_enabled(ColumnPath::from("source_offset"), false)
        .set_column_dictionary_enabled(ColumnPath::from("source_record_id"), false)
        // Nobody selects by the min and max of an id or a number; computing them compared
        // every value (1 % of ingest's CPU). Times, customers and amounts keep theirs.
        .set_column_statistics_enabled(ColumnPath::from("cdr_id"), EnabledStatistics::None)
        .set_column_statistics_enabled(ColumnPath::from("calling_number"), EnabledStatistics::None)
        .set_column_statistics_enabled(ColumnPath::from("called_number"), EnabledStatistics::None)
        .set_column_statistics_enabled(
            ColumnPath::from("source_record_id"),
            EnabledStatistics::None,
        )
        .set_created_by(concat!("evn ", env!("CARGO_PKG_VERSION")).to_owned());
    // Few distinct values: their dictionary indices are run-length encoded to a few bytes a
    // page already, and zstd would only add its contexts (created per column and file: 2.8 %
    // of ingest's CPU for all columns, perf, issue #7). Not the flags: booleans are written
    // plain, a bit a row, which zstd still shrinks.
    for column in [
        "switch_id",
        "zone",
        "plan",
        "source_topic",
        "source_partition",
        "source_format",
    ] {
        props = props.set_column_compression(ColumnPath::from(column), Compression::UNCOMPRESSED);
    }
    if let Some(keys) = &options.keys {
        props = props.with_file_encryption_properties(encryption(keys).map_err(pq)?);
    }
    if let Some(version) = &options.counselling_version {
        props = props.set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            COUNSELLING_VERSION_KEY.to_owned(),
            version.clone(),
        )]));
    }
    let props = props.build();
    let mut writer = ArrowWriter::try_new(sink, schema(), Some(props)).map_err(pq)?;
    writer.write(&batch.0).map_err(pq)?;
    writer.into_inner().map_err(pq)
}

/// The visible Parquet files of one month, sorted by name (so reads are deterministic).
pub fn list_month_files(data: &Path, month: BillingMonth) -> Result<Vec<PathBuf>, StoreError> {
    let dir = crate::month_dir(data, month);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(&dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| StoreError::io(&dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".parquet") && !name.starts_with('.') && !name.starts_with('_') {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every stored call of a month (unencrypted data).
pub fn read_month(data: &Path, month: BillingMonth) -> Result<Vec<StoredCall>, StoreError> {
    read_month_with(data, month, None)
}

/// Reads every stored call of a month, decrypting with `keys` where a file is encrypted.
pub fn read_month_with(
    data: &Path,
    month: BillingMonth,
    keys: Option<&Arc<Keyring>>,
) -> Result<Vec<StoredCall>, StoreError> {
    let mut rows = Vec::new();
    for file in list_month_files(data, month)? {
        read_file_with(&file, keys, &mut |call| rows.push(call))?;
    }
    Ok(rows)
}

/// Streams the rows of one unencrypted file to `sink`, batch by batch.
pub fn read_file(path: &Path, sink: &mut dyn FnMut(StoredCall)) -> Result<(), StoreError> {
    read_file_with(path, None, sink)
}

/// Streams the rows of one file to `sink`; encrypted files need `keys` (any key they name).
/// Plain files read either way, so data written before encryption was switched on stays
/// readable.
pub fn read_file_with(
    path: &Path,
    keys: Option<&Arc<Keyring>>,
    sink: &mut dyn FnMut(StoredCall),
) -> Result<(), StoreError> {
    read_file_with_info(path, keys, &mut |_| {}, sink)
}

/// [`read_file_with`], handing the file's [`FileInfo`] to `info` before any row.
pub fn read_file_with_info(
    path: &Path,
    keys: Option<&Arc<Keyring>>,
    info: &mut dyn FnMut(FileInfo),
    sink: &mut dyn FnMut(StoredCall),
) -> Result<(), StoreError> {
    let mut file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let encrypted = has_encrypted_footer(&mut file);
    read_from(path, file, encrypted, keys, info, sink)
}

/// Streams the rows of a whole Parquet file held in memory (an object store GET) to `sink`,
/// like [`read_file_with`]; `name` is for error messages only.
pub fn read_bytes_with(
    name: &Path,
    bytes: bytes::Bytes,
    keys: Option<&Arc<Keyring>>,
    sink: &mut dyn FnMut(StoredCall),
) -> Result<(), StoreError> {
    read_bytes_with_info(name, bytes, keys, &mut |_| {}, sink)
}

/// [`read_bytes_with`], handing the file's [`FileInfo`] to `info` before any row.
pub fn read_bytes_with_info(
    name: &Path,
    bytes: bytes::Bytes,
    keys: Option<&Arc<Keyring>>,
    info: &mut dyn FnMut(FileInfo),
    sink: &mut dyn FnMut(StoredCall),
) -> Result<(), StoreError> {
    let encrypted = bytes.ends_with(b"PARE");
    read_from(name, bytes, encrypted, keys, info, sink)
}

fn read_from<R: parquet::file::reader::ChunkReader + 'static>(
    path: &Path,
    reader: R,
    encrypted_footer: bool,
    keys: Option<&Arc<Keyring>>,
    info: &mut dyn FnMut(FileInfo),
    sink: &mut dyn FnMut(StoredCall),
) -> Result<(), StoreError> {
    let pq = |source| StoreError::Parquet {
        path: path.to_owned(),
        source,
    };
    let mut options = ArrowReaderOptions::new();
    match keys {
        Some(keys) => {
            let props =
                FileDecryptionProperties::with_key_retriever(Arc::new(Retriever(Arc::clone(keys))))
                    .build()
                    .map_err(pq)?;
            options = options.with_file_decryption_properties(props);
        }
        None if encrypted_footer => {
            return Err(StoreError::Encrypted {
                path: path.to_owned(),
            })
        }
        None => {}
    }
    let builder =
        ParquetRecordBatchReaderBuilder::try_new_with_options(reader, options).map_err(pq)?;
    let counselling_version = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == COUNSELLING_VERSION_KEY))
        .and_then(|k| k.value.clone());
    info(FileInfo {
        counselling_version,
    });
    let reader = builder.build().map_err(pq)?;
    for batch in reader {
        let batch = batch.map_err(|source| StoreError::Arrow {
            path: path.to_owned(),
            source,
        })?;
        decode(path, &batch, sink)?;
    }
    Ok(())
}

fn column<'a, T: 'static>(
    path: &Path,
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a T, StoreError> {
    let schema_err = |detail: String| StoreError::Schema {
        path: path.to_owned(),
        detail,
    };
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| schema_err(format!("column `{name}` is missing")))?;
    if col.null_count() > 0 {
        return Err(schema_err(format!("column `{name}` has nulls")));
    }
    col.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| schema_err(format!("column `{name}` has type {}", col.data_type())))
}

/// A nullable string column that older files lack: None when absent.
fn optional_strings<'a>(
    path: &Path,
    batch: &'a RecordBatch,
    name: &str,
) -> Result<Option<&'a StringArray>, StoreError> {
    let Some(col) = batch.column_by_name(name) else {
        return Ok(None);
    };
    col.as_any()
        .downcast_ref::<StringArray>()
        .map(Some)
        .ok_or_else(|| StoreError::Schema {
            path: path.to_owned(),
            detail: format!("column `{name}` has type {}", col.data_type()),
        })
}

fn decode(
    path: &Path,
    batch: &RecordBatch,
    sink: &mut dyn FnMut(StoredCall),
) -> Result<(), StoreError> {
    let s = |name| column::<StringArray>(path, batch, name);
    let (cdr_id, switch_id, customer_id) = (s("cdr_id")?, s("switch_id")?, s("customer_id")?);
    let (calling, called, zone, plan, topic) = (
        s("calling_number")?,
        s("called_number")?,
        s("zone")?,
        s("plan")?,
        s("source_topic")?,
    );
    let start = column::<TimestampMicrosecondArray>(path, batch, "start_time")?;
    let duration = column::<Int64Array>(path, batch, "duration_s")?;
    let charge = column::<Decimal128Array>(path, batch, "charge_eur")?;
    let shortened = column::<BooleanArray>(path, batch, "shortened")?;
    let counselling = column::<BooleanArray>(path, batch, "counselling")?;
    let partition = column::<Int32Array>(path, batch, "source_partition")?;
    let offset = column::<Int64Array>(path, batch, "source_offset")?;
    let format = optional_strings(path, batch, "source_format")?;
    let record_id = optional_strings(path, batch, "source_record_id")?;
    let scale = charge.scale() as u32;
    for i in 0..batch.num_rows() {
        let provenance = match (format, record_id) {
            (Some(f), Some(id)) if f.is_valid(i) && id.is_valid(i) => Some(Provenance {
                format: f.value(i).to_owned(),
                record_id: id.value(i).to_owned(),
            }),
            _ => None,
        };
        let start_time =
            DateTime::from_timestamp_micros(start.value(i)).ok_or_else(|| StoreError::Schema {
                path: path.to_owned(),
                detail: format!("start_time out of range in row {i}"),
            })?;
        sink(StoredCall {
            call: RatedCall {
                cdr_id: cdr_id.value(i).into(),
                switch_id: switch_id.value(i).into(),
                customer_id: customer_id.value(i).into(),
                calling_number: calling.value(i).into(),
                called_number: called.value(i).into(),
                start_time,
                duration_s: duration.value(i),
                zone: zone.value(i).into(),
                charge_eur: Decimal::from_i128_with_scale(charge.value(i), scale),
                billing_month: BillingMonth::of(start_time),
                plan: plan.value(i).into(),
                shortened: shortened.value(i),
                counselling: counselling.value(i),
            },
            source_topic: topic.value(i).to_owned(),
            source_partition: partition.value(i),
            source_offset: offset.value(i),
            provenance,
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::str::FromStr;

    /// `rows` grouped by billing month, as ingest hands them to a commit.
    pub(crate) fn by_month(rows: &[StoredCall]) -> BTreeMap<BillingMonth, CallBatch> {
        let mut months: BTreeMap<BillingMonth, CallColumns> = BTreeMap::new();
        for r in rows {
            months
                .entry(r.call.billing_month)
                .or_default()
                .push_stored(r);
        }
        months
            .into_iter()
            .map(|(month, mut columns)| (month, columns.finish()))
            .collect()
    }

    pub(crate) fn sample(i: i64) -> StoredCall {
        let start_time = DateTime::from_timestamp(1_795_000_000 + i * 61, 123_456_000).unwrap();
        StoredCall {
            call: RatedCall {
                cdr_id: format!("fra1-{i:012}").into(),
                switch_id: "fra1".into(),
                customer_id: "K1001".into(),
                calling_number: "+4930901820".into(),
                called_number: "+4915112345xxx".into(),
                start_time,
                duration_s: 122,
                zone: "mobile".into(),
                charge_eur: Decimal::from_str("0.3030").unwrap() + Decimal::new(i, 4),
                billing_month: BillingMonth::of(start_time),
                plan: "office_flat".into(),
                shortened: true,
                counselling: i % 7 == 0,
            },
            source_topic: "cdrs".into(),
            source_partition: 3,
            source_offset: i,
            provenance: None,
        }
    }

    pub(crate) fn keyring(fill: u8) -> Arc<Keyring> {
        Arc::new(Keyring::new(
            evn_keys::DataKey::from_bytes([fill; 32]),
            Vec::new(),
        ))
    }

    /// The counselling list version travels in the file, plain or encrypted, and comes back
    /// before the rows; a file written without one says so.
    #[test]
    fn the_counselling_list_version_is_read_back_before_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<StoredCall> = (0..3).map(sample).collect();
        for (name, keys, version) in [
            ("p.parquet", None, Some("2026-Q4+sha256:ab")),
            ("e.parquet", Some(keyring(7)), Some("2026-Q4+sha256:ab")),
            ("n.parquet", None, None),
        ] {
            let path = dir.path().join(name);
            let options = WriteOptions {
                keys: keys.clone(),
                counselling_version: version.map(str::to_owned),
                ..WriteOptions::default()
            };
            write_file(&path, &rows, options).unwrap();
            let (mut info, n) = (None, std::cell::Cell::new(0));
            let mut rows_before_info = None;
            read_file_with_info(
                &path,
                keys.as_ref(),
                &mut |i| {
                    rows_before_info = Some(n.get());
                    info = Some(i);
                },
                &mut |_| n.set(n.get() + 1),
            )
            .unwrap();
            assert_eq!(
                info.unwrap().counselling_version.as_deref(),
                version,
                "{name}"
            );
            assert_eq!((rows_before_info, n.get()), (Some(0), 3), "{name}");
        }
    }

    #[test]
    fn encrypted_files_hide_every_value_and_need_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.parquet");
        let rows: Vec<StoredCall> = (0..500).map(sample).collect();
        let keys = keyring(9);
        let options = WriteOptions {
            keys: Some(Arc::clone(&keys)),
            ..WriteOptions::default()
        };
        write_file(&path, &rows, options).unwrap();
        let raw = std::fs::read(&path).unwrap();
        for needle in [
            "4930901820",
            "15112345",
            "K1001",
            "fra1-",
            "mobile",
            "office_flat",
        ] {
            assert!(
                !raw.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} readable in the file bytes"
            );
        }
        assert!(matches!(
            read_file(&path, &mut |_| {}),
            Err(StoreError::Encrypted { .. })
        ));
        let wrong = keyring(8);
        let err = read_file_with(&path, Some(&wrong), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("not in the key file"), "{err}");
        let mut back = Vec::new();
        read_file_with(&path, Some(&keys), &mut |c| back.push(c)).unwrap();
        assert_eq!(back, rows);
    }

    #[test]
    fn after_rotation_old_files_read_with_the_retired_key_and_plain_files_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<StoredCall> = (0..10).map(sample).collect();
        let old = dir.path().join("old.parquet");
        let plain = dir.path().join("plain.parquet");
        let opts = |k: &Arc<Keyring>| WriteOptions {
            keys: Some(Arc::clone(k)),
            ..WriteOptions::default()
        };
        write_file(&old, &rows, opts(&keyring(1))).unwrap();
        write_file(&plain, &rows, WriteOptions::default()).unwrap();
        let rotated = Arc::new(Keyring::new(
            evn_keys::DataKey::from_bytes([2; 32]),
            vec![evn_keys::DataKey::from_bytes([1; 32])],
        ));
        let new = dir.path().join("new.parquet");
        write_file(&new, &rows, opts(&rotated)).unwrap();
        for f in [&old, &plain, &new] {
            let mut n = 0;
            read_file_with(f, Some(&rotated), &mut |_| n += 1).unwrap();
            assert_eq!(n, 10, "{}", f.display());
        }
        // The new file is under the new key only.
        assert!(read_file_with(&new, Some(&keyring(1)), &mut |_| {}).is_err());
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.parquet");
        let rows: Vec<StoredCall> = (0..1000).map(sample).collect();
        write_file(
            &path,
            &rows,
            WriteOptions {
                row_group_rows: 300,
                ..WriteOptions::default()
            },
        )
        .unwrap();
        let mut back = Vec::new();
        read_file(&path, &mut |r| back.push(r)).unwrap();
        // Microsecond precision is what the file promises.
        assert_eq!(back, rows);
    }

    #[test]
    fn provenance_columns_are_last_nullable_and_old_files_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        // Rows without provenance before, between and after those with it.
        let mut rows: Vec<StoredCall> = (0..6).map(sample).collect();
        rows[1].provenance = Some(Provenance {
            format: "asterisk-csv".into(),
            record_id: "1795508102.1".into(),
        });
        rows[4].provenance = Some(Provenance {
            format: "kamailio-json".into(),
            record_id: "a84b4c76e66710".into(),
        });
        write_file(&path, &rows, WriteOptions::default()).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let batch = reader.into_iter().next().unwrap().unwrap();
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names[15..], ["source_format", "source_record_id"]);
        let col = |name| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let (format, id) = (col("source_format"), col("source_record_id"));
        for i in [0, 2, 3, 5] {
            assert!(format.is_null(i) && id.is_null(i), "row {i}");
        }
        assert_eq!(format.value(4), "kamailio-json");
        assert_eq!(
            (format.value(1), id.value(1)),
            ("asterisk-csv", "1795508102.1")
        );
        let mut back = Vec::new();
        read_file(&path, &mut |r| back.push(r)).unwrap();
        assert_eq!(back, rows);

        // A file from before the columns existed: the first 15 columns only.
        let old = dir.path().join("old.parquet");
        for r in &mut rows {
            r.provenance = None;
        }
        let full = CallBatch::from_rows(&rows).0;
        let narrow = full.project(&(0..15).collect::<Vec<_>>()).unwrap();
        let mut w =
            ArrowWriter::try_new(File::create(&old).unwrap(), narrow.schema(), None).unwrap();
        w.write(&narrow).unwrap();
        w.close().unwrap();
        let mut back = Vec::new();
        read_file(&old, &mut |r| back.push(r)).unwrap();
        assert_eq!(back, rows);
    }

    #[test]
    fn a_foreign_file_is_a_schema_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "cdr_id",
                DataType::Int64,
                false,
            )])),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .unwrap();
        let mut w =
            ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let err = read_file(&path, &mut |_| {}).unwrap_err();
        assert!(matches!(err, StoreError::Schema { .. }), "{err}");
        std::fs::write(&path, b"not parquet").unwrap();
        assert!(matches!(
            read_file(&path, &mut |_| {}).unwrap_err(),
            StoreError::Parquet { .. }
        ));
    }
}
