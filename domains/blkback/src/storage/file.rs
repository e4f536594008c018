//! The storage back-ends on host files (feature `std`): [`RawFile`] and
//! [`Qcow2`], and [`open`], which picks one from the file's magic. See
//! [the parent module](super).

use std::boxed::Box;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::{check, Options, Storage, StorageError, ALIGN};

/// Opens `path` as qcow2 if it carries the qcow2 magic, else as raw.
pub fn open(path: &Path, opts: Options) -> io::Result<Box<dyn Storage>> {
    let mut magic = [0u8; 4];
    let f = File::open(path)?;
    let n = f.read_at(&mut magic, 0)?;
    if n == 4 && magic == *b"QFI\xfb" {
        Ok(Box::new(Qcow2::open(path, opts)?))
    } else {
        Ok(Box::new(RawFile::open(path, opts)?))
    }
}

/// A raw (sparse) image file.
#[derive(Debug)]
pub struct RawFile {
    file: File,
    /// Buffered descriptor for unaligned transfers when `file` is `O_DIRECT`.
    buffered: Option<File>,
    len: u64,
}

impl RawFile {
    /// Opens an existing raw image.
    pub fn open(path: &Path, opts: Options) -> io::Result<RawFile> {
        let mut o = OpenOptions::new();
        o.read(true).write(opts.writable);
        let buffered = o.open(path)?;
        let len = buffered.metadata()?.len();
        if opts.direct {
            let mut d = OpenOptions::new();
            d.read(true)
                .write(opts.writable)
                .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32);
            Ok(RawFile {
                file: d.open(path)?,
                buffered: Some(buffered),
                len,
            })
        } else {
            Ok(RawFile {
                file: buffered,
                buffered: None,
                len,
            })
        }
    }

    /// Creates (or truncates) a sparse raw image of `len` bytes.
    pub fn create(path: &Path, len: u64) -> io::Result<()> {
        let f = File::create(path)?;
        f.set_len(len)?;
        f.sync_all()
    }

    fn fd_for(&self, ptr: *const u8, len: usize, offset: u64) -> &File {
        match &self.buffered {
            Some(b)
                if (ptr as usize) % ALIGN != 0
                    || len % ALIGN != 0
                    || offset % ALIGN as u64 != 0 =>
            {
                b
            }
            _ => &self.file,
        }
    }

    fn check(&self, offset: u64, len: usize) -> Result<(), StorageError> {
        check(self.len, offset, len as u64)
    }
}

impl Storage for RawFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), StorageError> {
        self.check(offset, buf.len())?;
        Ok(self
            .fd_for(buf.as_ptr(), buf.len(), offset)
            .read_exact_at(buf, offset)?)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), StorageError> {
        self.check(offset, buf.len())?;
        Ok(self
            .fd_for(buf.as_ptr(), buf.len(), offset)
            .write_all_at(buf, offset)?)
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(self.file.sync_data()?)
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), StorageError> {
        if len == 0 {
            return Ok(());
        }
        self.check(offset, 0)?;
        let len = len.min(self.len - offset);
        rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
            offset,
            len,
        )
        .map_err(io::Error::from)?;
        Ok(())
    }
}

type ImagoQcow2 = imago::qcow2::Qcow2<imago::file::File>;

/// A qcow2 image, through `imago`.
pub struct Qcow2 {
    access: imago::FormatAccess<imago::file::File>,
    len: u64,
}

impl std::fmt::Debug for Qcow2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2").field("len", &self.len).finish()
    }
}

impl Qcow2 {
    /// Opens an existing qcow2 image (its backing chain too, if any).
    pub fn open(path: &Path, opts: Options) -> io::Result<Qcow2> {
        use imago::FormatDriverBuilder;
        let q = ImagoQcow2::builder_path(path)
            .write(opts.writable)
            .storage_open_options(imago::StorageOpenOptions::new().direct(opts.direct))
            .open(imago::PermissiveImplicitOpenGate::default())?;
        let access = imago::FormatAccess::new(q);
        let len = access.size();
        Ok(Qcow2 { access, len })
    }
}

impl Storage for Qcow2 {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), StorageError> {
        check(self.len, offset, buf.len() as u64)?;
        Ok(self.access.read(buf, offset)?)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), StorageError> {
        check(self.len, offset, buf.len() as u64)?;
        Ok(self.access.write(buf, offset)?)
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.access.flush()?;
        Ok(self.access.sync()?)
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), StorageError> {
        // imago's discard needs exclusive access; zeroing gives the same
        // guarantee to the guest (discarded data may read as anything).
        check(self.len, offset, len)?;
        Ok(self.access.write_zeroes(offset, len)?)
    }

    fn physical_sector_size(&self) -> u32 {
        512
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::AlignedBuf;
    use std::format;
    use std::process::Command;
    use std::string::String;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("blkback-storage-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    fn exercise(s: &dyn Storage) {
        let mut w = AlignedBuf::new(8192);
        for (i, b) in w.bytes_mut(8192).iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        s.write_at(w.bytes(8192), 4096).unwrap();
        // Unaligned (512-byte) transfers work too.
        s.write_at(&[7u8; 512], 512).unwrap();
        s.flush().unwrap();
        let mut r = AlignedBuf::new(8192);
        s.read_at(r.bytes_mut(8192), 4096).unwrap();
        assert_eq!(r.bytes(8192), w.bytes(8192));
        let mut small = [0u8; 512];
        s.read_at(&mut small, 512).unwrap();
        assert_eq!(small, [7u8; 512]);
        s.discard(4096, 4096).unwrap();
        s.read_at(r.bytes_mut(4096), 4096).unwrap();
        assert!(
            r.bytes(4096).iter().all(|&b| b == 0),
            "discarded reads zero"
        );
        assert!(s.read_at(&mut small, s.len()).is_err(), "past the end");
    }

    #[test]
    fn raw_buffered_and_direct() {
        for direct in [false, true] {
            let p = tmp(&format!("raw-{direct}.img"));
            RawFile::create(&p, 1 << 20).unwrap();
            let s = open(
                &p,
                Options {
                    writable: true,
                    direct,
                },
            )
            .unwrap();
            assert_eq!(s.len(), 1 << 20);
            exercise(&*s);
            let used = std::fs::metadata(&p).unwrap();
            assert!(
                std::os::unix::fs::MetadataExt::blocks(&used) * 512 < 1 << 20,
                "still sparse"
            );
        }
    }

    #[test]
    fn qcow2_through_imago_passes_qemu_img_check() {
        let p = tmp("disk.qcow2");
        let _ = std::fs::remove_file(&p);
        let st = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&p)
            .arg("1M")
            .status()
            .expect("qemu-img is needed (cargo xtask setup installs qemu-utils)");
        assert!(st.success());
        {
            let s = open(
                &p,
                Options {
                    writable: true,
                    direct: false,
                },
            )
            .unwrap();
            assert_eq!(s.len(), 1 << 20);
            exercise(&*s);
        }
        let out = Command::new("qemu-img")
            .arg("check")
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        // qemu-img reads back what imago wrote.
        let raw = tmp("disk.raw");
        let st = Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(&p)
            .arg(&raw)
            .status()
            .unwrap();
        assert!(st.success());
        let bytes = std::fs::read(&raw).unwrap();
        assert_eq!(&bytes[512..1024], &[7u8; 512]);
        assert_eq!(bytes[8192 + 5], (4101 % 251) as u8);
        assert!(bytes[4096..8192].iter().all(|&b| b == 0));
    }
}
