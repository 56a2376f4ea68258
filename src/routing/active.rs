//! Loading a routing file for use: parse, check against the prompts that actually loaded,
//! and label it (content hash, load time) so logs say which version a call ran on.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::{check, Problem, PromptLoadFailure, Routing};
use crate::media::prompts::{PromptError, PromptLibrary};

/// A routing file that parsed and passed every check.
#[derive(Debug, Clone)]
pub struct ActiveRouting {
    pub routing: Arc<Routing>,
    /// First 12 hex digits of the file's SHA-256.
    pub hash: String,
    pub loaded_at: SystemTime,
}

/// Reads, parses and checks `path`; every problem is returned, none is fatal to the caller.
pub fn load_checked(
    path: &Path,
    prompts: &PromptLibrary,
    prompt_errors: &[PromptError],
) -> Result<ActiveRouting, Vec<Problem>> {
    // The full path, as the summary line says it too.
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| {
        vec![Problem {
            file: file.clone(),
            line: 0,
            key: String::new(),
            message: format!("cannot read {}: {error}", path.display()),
        }]
    })?;
    // Every problem in one pass: the checks run on what could be read despite value problems.
    let (routing, mut problems) = crate::routing::reader::parse_lenient(&text, &file);
    let Some(routing) = routing else {
        return Err(problems);
    };
    let failures: Vec<PromptLoadFailure> = prompt_errors.iter().filter_map(load_failure).collect();
    for problem in check(
        &routing,
        &|lang, name| prompts.get(lang, name).is_some(),
        &failures,
    ) {
        if !problems.contains(&problem) {
            problems.push(problem);
        }
    }
    if !problems.is_empty() {
        problems.sort_by_key(|problem| problem.line);
        return Err(problems);
    }
    let digest = Sha256::digest(text.as_bytes());
    let hash = digest
        .iter()
        .take(6)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok(ActiveRouting {
        routing: Arc::new(routing),
        hash,
        loaded_at: SystemTime::now(),
    })
}

/// `prompts/<lang>/<name>.<ext>` that failed to decode, as the checker names prompts.
fn load_failure(error: &PromptError) -> Option<PromptLoadFailure> {
    let name = error.path.file_stem()?.to_str()?.to_owned();
    let language = error.path.parent()?.file_name()?.to_str()?.to_owned();
    Some(PromptLoadFailure {
        language,
        name,
        reason: error.reason.to_string(),
    })
}
