//! The tar stream inside a layer blob. Layers are gzip, zstd or plain tar whatever their media
//! type says (tools and registries mislabel them), so the format is told from the first bytes.

use std::io::{self, BufRead, Read};

use flate2::bufread::MultiGzDecoder;

use super::read_full;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const MAGIC_LEN: usize = 4;

/// The uncompressed content of the layer blob `compressed`. Takes a `BufRead` so that the
/// decoders read straight from the caller's buffer (a download's chunks, a file's buffer)
/// without a copy of their own.
pub fn decompressed<'a>(mut compressed: impl BufRead + 'a) -> io::Result<Box<dyn Read + 'a>> {
    // The magic may straddle the first chunks of a download, so it is read, not peeked.
    let mut magic = [0u8; MAGIC_LEN];
    let n = read_full(&mut compressed, &mut magic)?;
    let head = &magic[..n];
    let whole = io::Cursor::new(head.to_vec()).chain(compressed);
    Ok(if head.starts_with(GZIP_MAGIC) {
        Box::new(MultiGzDecoder::new(whole))
    } else if head.starts_with(ZSTD_MAGIC) {
        // Reads every frame (zstd:chunked and pigz-like writers emit several).
        Box::new(zstd::stream::read::Decoder::with_buffer(whole)?)
    } else {
        Box::new(whole)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A reader that hands out one byte per call, as a download split into tiny chunks would.
    struct Dribble<'a>(&'a [u8]);

    impl Read for Dribble<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(out.len()).min(1);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn all(r: impl BufRead) -> Vec<u8> {
        let mut out = Vec::new();
        decompressed(r).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn formats_are_told_by_content_across_chunks() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data[..50_000]).unwrap();
        let mut two_members = gz.finish().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data[50_000..]).unwrap();
        two_members.extend(gz.finish().unwrap());
        let zst = zstd::stream::encode_all(&data[..], 3).unwrap();
        for (what, blob) in [("gzip", &two_members), ("zstd", &zst), ("plain", &data)] {
            assert_eq!(all(&blob[..]), data, "{what}");
            let dribbled = io::BufReader::with_capacity(1, Dribble(blob));
            assert_eq!(all(dribbled), data, "{what}, one byte at a time");
        }
        // Shorter than any magic: plain content.
        assert_eq!(all(&b"ab"[..]), b"ab");
        assert_eq!(all(&b""[..]), b"");
    }

    #[test]
    fn truncated_compressed_streams_fail() {
        let data = vec![7u8; 100_000];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::stream::encode_all(&data[..], 3).unwrap();
        for blob in [&gz, &zst] {
            let cut = &blob[..blob.len() - 4];
            let mut out = Vec::new();
            assert!(decompressed(cut).unwrap().read_to_end(&mut out).is_err());
        }
    }
}
