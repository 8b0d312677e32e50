//! Writes the seed inputs of the drive-format fuzz targets
//! (`cardfs::fuzzing::drive_seeds`, made by the encoders with the targets'
//! fixed keys) into `DIR/<target>/seed-<n>`. Used by `scripts/fuzz`.
//! Usage: cargo run --example fuzz_seeds -- DIR

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for (target, bytes) in cardfs::fuzzing::drive_seeds() {
        let n = counts.entry(target).or_default();
        let sub = dir.join(target);
        std::fs::create_dir_all(&sub)?;
        std::fs::write(sub.join(format!("seed-{n}")), bytes)?;
        *n += 1;
    }
    for (target, n) in counts {
        println!("{target}: {n} seeds");
    }
    Ok(())
}
