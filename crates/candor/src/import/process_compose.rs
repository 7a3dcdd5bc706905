//! Reading process-compose files: written on branch import2 (issue 30); until it is merged, an error says so.

use std::path::Path;

use super::draft::Draft;

pub fn read(path: &Path, _text: &str, _draft: &mut Draft) -> anyhow::Result<()> {
    anyhow::bail!(
        "{}: reading process-compose files is not yet in this build (issue 30)",
        path.display()
    )
}
