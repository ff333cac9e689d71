//! Recognising a file from its first bytes: the container formats by their magic numbers, the
//! whole-file compression of text formats, and whether decompressed text is JSON or delimited.
//! Schema inference happens later, per format; this module only decides what a file is.

use std::io::Read;

use kglue_crds::common::Compression;

/// How many decompressed bytes of a text file are examined to classify it and infer its schema.
pub const TEXT_SAMPLE_BYTES: usize = 1 << 20;

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniffed {
    /// Apache Parquet (`PAR1`).
    Parquet,
    /// An Avro object container file (`Obj\x01`).
    Avro,
    /// Apache ORC (`ORC`).
    Orc,
    /// Text, possibly compressed; the decompressed sample is attached.
    Text {
        /// The whole-file compression.
        compression: Compression,
        /// Up to [`TEXT_SAMPLE_BYTES`] of decompressed text, cut at the last complete line when
        /// the file is longer.
        sample: String,
        /// Whether the sample holds the whole file.
        complete: bool,
    },
}

/// Why a file could not be recognised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SniffError {
    /// The compressed stream is corrupt.
    #[error("{compression:?}-compressed, but the stream is corrupt: {message}")]
    CorruptCompression {
        /// The compression the magic number announced.
        compression: Compression,
        /// The decoder's message.
        message: String,
    },
    /// The file is neither a known binary format nor UTF-8 text.
    #[error("not UTF-8 text: invalid byte 0x{byte:02x} at offset {offset}")]
    NotUtf8 {
        /// The offset of the first invalid byte in the (decompressed) sample.
        offset: usize,
        /// That byte.
        byte: u8,
    },
}

/// The compression a file starts with, from its magic number.
pub fn compression_of(head: &[u8]) -> Compression {
    match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        [b'B', b'Z', b'h', ..] => Compression::Bzip2,
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
        _ => Compression::None,
    }
}

/// Classifies a file from its first bytes (`head`, as many as were read; at least a few KiB for
/// compressed text, since the decompressed sample is taken from them). `whole_file` says whether
/// `head` is the entire file: then a compressed stream that ends early is corrupt, not cut.
pub fn sniff(head: &[u8], whole_file: bool) -> Result<Sniffed, SniffError> {
    if head.starts_with(b"PAR1") {
        return Ok(Sniffed::Parquet);
    }
    if head.starts_with(b"Obj\x01") {
        return Ok(Sniffed::Avro);
    }
    if head.starts_with(b"ORC") {
        return Ok(Sniffed::Orc);
    }
    let compression = compression_of(head);
    let (bytes, complete) = decompress_sample(compression, head, whole_file)?;
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        // A multi-byte character cut by the end of the sample is not an error.
        Err(e) if e.error_len().is_none() && !complete => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(e) => {
            let offset = e.valid_up_to();
            return Err(SniffError::NotUtf8 {
                offset,
                byte: bytes[offset],
            });
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let sample = if complete {
        text.to_string()
    } else {
        // Only whole lines: the last one is probably cut.
        text.rfind('\n').map(|end| text[..=end].to_string()).unwrap_or_default()
    };
    Ok(Sniffed::Text {
        compression,
        sample,
        complete,
    })
}

/// Decompresses up to [`TEXT_SAMPLE_BYTES`] from the start of a (possibly compressed) file.
/// Returns the bytes and whether they are the whole file.
/// A reader of the decompressed bytes of `compressed` (itself for Compression::None and the
/// codecs that live inside Parquet files).
pub fn decompressing<'a>(compression: Compression, compressed: &'a [u8]) -> std::io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(compressed)?),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(compressed)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(compressed)),
        _ => Box::new(compressed),
    })
}

fn decompress_sample(compression: Compression, head: &[u8], whole_file: bool) -> Result<(Vec<u8>, bool), SniffError> {
    let limit = TEXT_SAMPLE_BYTES as u64;
    let mut out = Vec::new();
    let corrupt = |e: std::io::Error| SniffError::CorruptCompression {
        compression,
        message: e.to_string(),
    };
    if matches!(compression, Compression::None | Compression::Snappy | Compression::Lz4) {
        let complete = whole_file && head.len() <= TEXT_SAMPLE_BYTES;
        return Ok((head[..head.len().min(TEXT_SAMPLE_BYTES)].to_vec(), complete));
    }
    let result = decompressing(compression, head)
        .map_err(corrupt)?
        .take(limit + 1)
        .read_to_end(&mut out);
    match result {
        // The whole (compressed) head decoded: complete when it fits the sample.
        Ok(_) => {
            let complete = whole_file && out.len() <= TEXT_SAMPLE_BYTES;
            out.truncate(TEXT_SAMPLE_BYTES);
            Ok((out, complete))
        }
        // The head ends mid-stream (we read only the start of a big file): keep what decoded.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !whole_file && !out.is_empty() => {
            out.truncate(TEXT_SAMPLE_BYTES);
            Ok((out, false))
        }
        Err(e) => Err(corrupt(e)),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("compress");
        encoder.finish().expect("finish")
    }

    fn bzip2(data: &[u8]) -> Vec<u8> {
        let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        encoder.write_all(data).expect("compress");
        encoder.finish().expect("finish")
    }

    #[test]
    fn binary_formats_by_magic_number() {
        assert_eq!(sniff(b"PAR1\x15\x04rest", false), Ok(Sniffed::Parquet));
        assert_eq!(sniff(b"Obj\x01\x04\x14avro.schema", false), Ok(Sniffed::Avro));
        assert_eq!(sniff(b"ORC\x0a\x03", false), Ok(Sniffed::Orc));
    }

    #[test]
    fn compressed_text_is_decompressed_for_classification() {
        let text = b"id,name\n1,a\n2,b\n";
        let cases: [(Compression, Vec<u8>); 4] = [
            (Compression::None, text.to_vec()),
            (Compression::Gzip, gzip(text)),
            (Compression::Zstd, zstd::encode_all(&text[..], 3).expect("zstd")),
            (Compression::Bzip2, bzip2(text)),
        ];
        for (compression, bytes) in cases {
            assert_eq!(
                sniff(&bytes, true),
                Ok(Sniffed::Text {
                    compression,
                    sample: "id,name\n1,a\n2,b\n".into(),
                    complete: true
                }),
                "{compression:?}"
            );
        }
    }

    #[test]
    fn a_truncated_head_of_a_big_compressed_file_keeps_whole_lines() {
        let text: String = (0..20_000).map(|i| format!("{i},row {i}\n")).collect();
        let compressed = gzip(text.as_bytes());
        let head = &compressed[..compressed.len() / 2];
        let Ok(Sniffed::Text { sample, complete, .. }) = sniff(head, false) else {
            panic!("a truncated gzip head is still text");
        };
        assert!(!complete);
        assert!(sample.ends_with('\n') && sample.starts_with("0,row 0\n1,row 1\n"));
        assert!(text.starts_with(&sample));
    }

    #[test]
    fn non_utf8_text_is_named_with_its_offset() {
        assert_eq!(
            sniff(b"id,name\n1,caf\xe9\n", true),
            Err(SniffError::NotUtf8 { offset: 13, byte: 0xe9 })
        );
    }

    #[test]
    fn corrupt_compression_is_reported() {
        let mut bytes = gzip(b"id\n1\n");
        bytes.truncate(12);
        bytes.extend_from_slice(&[0xff; 8]);
        let error = sniff(&bytes, true).expect_err("corrupt");
        assert!(
            matches!(
                error,
                SniffError::CorruptCompression {
                    compression: Compression::Gzip,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn a_byte_order_mark_is_dropped() {
        assert_eq!(
            sniff("\u{feff}a,b\n1,2\n".as_bytes(), true),
            Ok(Sniffed::Text {
                compression: Compression::None,
                sample: "a,b\n1,2\n".into(),
                complete: true
            })
        );
    }

    proptest::proptest! {
        // The sniffer reads the first bytes of any object a crawl meets: whatever they are, it
        // names a format or refuses, never panics.
        #[test]
        fn any_bytes_are_sniffed_without_panic(head in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096), whole in proptest::prelude::any::<bool>()) {
            let _ = sniff(&head, whole);
        }

        #[test]
        fn text_shaped_bytes_are_sniffed_without_panic(text in "[a-z0-9,;|\t\"'{}\\[\\]:. \n\r-]{0,600}", whole in proptest::prelude::any::<bool>()) {
            let _ = sniff(text.as_bytes(), whole);
        }
    }
}
