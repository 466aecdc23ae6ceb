//! `car export`: the DAGs under roots as a CARv1 (or CARv2) file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ipfrs_car::{CarError, CarV2Writer, CarWriter};
use ipfrs_storage::{BlockStore, Cid};
use serde::Serialize;

use super::caller::Caller;
use super::dag::{self, OnMissing};
use super::error::{Error, Result, parse_cid};
use super::output::{self, Report};
use super::progress;

/// What `car export` wrote.
#[derive(Debug, Serialize)]
pub struct Exported {
    /// The file written.
    pub output: PathBuf,
    /// "v1" or "v2".
    pub version: &'static str,
    /// The roots in its header.
    pub roots: Vec<String>,
    /// Blocks written.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blocks of other codecs: written, their links (if any) not followed.
    pub unfollowed: u64,
}

impl Report for Exported {
    fn human(&self) -> String {
        let mut out = format!(
            "{}: CAR{}, {} blocks, {}\n",
            self.output.display(),
            self.version,
            self.blocks,
            output::bytes(self.bytes)
        );
        if self.unfollowed > 0 {
            out.push_str(&format!(
                "note: {} blocks have codecs whose links are not followed (only dag-pb, dag-cbor, raw)\n",
                self.unfollowed
            ));
        }
        out
    }
}

enum Sink<W: Write + std::io::Seek> {
    V1(CarWriter<W>),
    V2(CarV2Writer<W>),
}

impl<W: Write + std::io::Seek> Sink<W> {
    fn write_block(&mut self, cid: &Cid, data: &[u8]) -> Result<(), CarError> {
        match self {
            Sink::V1(w) => w.write_block(cid, data),
            Sink::V2(w) => w.write_block(cid, data),
        }
    }

    fn finish(self) -> Result<W, CarError> {
        match self {
            Sink::V1(w) => w.finish(),
            Sink::V2(w) => w.finish(),
        }
    }
}

/// Writes every block reachable from `roots` in `store` to `out` as CARv1 (CARv2 with `v2`),
/// each block once, depth first in link order (as go-car), with its bytes as stored. A missing
/// block is an error.
pub fn write_car<S: BlockStore, W: Write + std::io::Seek>(
    store: &S,
    roots: &[Cid],
    out: W,
    v2: bool,
    path: &Path,
) -> Result<(W, dag::Walked)> {
    let car_err = |source| Error::Car {
        path: path.to_path_buf(),
        source: Box::new(source),
        stored: 0,
    };
    let mut sink = if v2 {
        Sink::V2(CarV2Writer::new(out, roots).map_err(car_err)?)
    } else {
        Sink::V1(CarWriter::new(out, roots).map_err(car_err)?)
    };
    let bar = progress::bar("exporting", None, false);
    let walked = dag::walk(store, roots, OnMissing::Fail, |cid, data| {
        bar.inc(1);
        sink.write_block(cid, data).map_err(car_err)
    })?;
    bar.finish_and_clear();
    Ok((sink.finish().map_err(car_err)?, walked))
}

/// `car export`: written to a temporary file beside `output`, renamed over it only when
/// complete, so a failed export leaves no partial file; the file gets the mode a new file
/// gets (0666 less the umask), not the temporary file's 0600. `output` `-` is stdout (CARv1
/// only: CARv2 needs to seek back to its header), where a failure mid-way leaves what was
/// written, and the command exits non-zero. `output` is reported as given and written where
/// `caller` resolves it.
pub fn run<S: BlockStore>(
    store: &S,
    roots: &[String],
    output: &Path,
    v2: bool,
    caller: &mut Caller,
) -> Result<Exported> {
    let roots = roots
        .iter()
        .map(|r| parse_cid(r))
        .collect::<Result<Vec<_>>>()?;
    if output.as_os_str() == "-" {
        return to_stdout(store, &roots, v2, caller);
    }
    let shown = output;
    let output = &caller.path(shown);
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = tempfile::NamedTempFile::new_in(&dir)
        .map_err(|e| Error::io("cannot create a file in", &dir, e))?;
    set_mode(temp.as_file(), caller.new_file_mode())
        .map_err(|e| Error::io("cannot chmod", temp.path(), e))?;
    let file = temp
        .reopen()
        .map_err(|e| Error::io("cannot open", temp.path(), e))?;
    let (out, walked) = write_car(store, &roots, BufWriter::new(file), v2, output)?;
    let file: File = out
        .into_inner()
        .map_err(|e| Error::io("cannot write", output, e.into_error()))?;
    file.sync_all()
        .map_err(|e| Error::io("cannot sync", output, e))?;
    temp.persist(output)
        .map_err(|e| Error::io("cannot write", output, e.error))?;
    Ok(Exported {
        output: shown.to_path_buf(),
        version: if v2 { "v2" } else { "v1" },
        roots: roots.iter().map(ToString::to_string).collect(),
        blocks: walked.blocks,
        bytes: walked.bytes,
        unfollowed: walked.unfollowed,
    })
}

/// `car export -o -`: CARv1 streamed to the caller's stdout.
fn to_stdout<S: BlockStore>(
    store: &S,
    roots: &[Cid],
    v2: bool,
    caller: &mut Caller,
) -> Result<Exported> {
    if v2 {
        return Err(Error::Usage(
            "--v2 cannot be written to stdout (CARv2 seeks back to its header): give a file \
             with -o"
                .into(),
        ));
    }
    let stdout = Path::new("stdout");
    let car_err = |source| Error::Car {
        path: stdout.to_path_buf(),
        source: Box::new(source),
        stored: 0,
    };
    let mut car = CarWriter::new(BufWriter::new(caller.out()), roots).map_err(car_err)?;
    let walked = dag::walk(store, roots, OnMissing::Fail, |cid, data| {
        car.write_block(cid, data).map_err(car_err)
    })?;
    car.finish()
        .map_err(car_err)?
        .flush()
        .map_err(|e| Error::io("cannot write to", stdout, e))?;
    Ok(Exported {
        output: PathBuf::from("-"),
        version: "v1",
        roots: roots.iter().map(ToString::to_string).collect(),
        blocks: walked.blocks,
        bytes: walked.bytes,
        unfollowed: walked.unfollowed,
    })
}

/// Gives `file` (a temporary file, created 0600) the mode `open(2)` gives a new file: 0666
/// less the process's umask, so an exported file is as readable as one `cp` would make.
pub fn set_new_file_mode(file: &File) -> std::io::Result<()> {
    set_mode(file, 0o666 & !umask())
}

fn set_mode(file: &File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

/// The process's umask (what the caller of a handed command sends). Read from /proc (Linux 4.7+) since the only system call that reads
/// it also sets it, which would race with other threads creating files; that pair is the
/// fallback where /proc does not say.
pub fn umask() -> u32 {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(mask) = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
    {
        return mask;
    }
    // SAFETY: umask only swaps the process's mask; it is put back at once.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old);
        old as u32
    }
}
