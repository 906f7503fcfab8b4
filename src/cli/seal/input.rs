//! Where `app seal set` gets values: a hidden prompt, stdin (one key) or `--from-file`, never
//! argv, where `ps` and shell history would see them.

use std::io::{IsTerminal, Read};

use anyhow::{Context, bail};
use zeroize::Zeroizing;

use crate::cli::exit::{ExitCode, coded};
use crate::config::SecretString;
use crate::secrets;

/// Values for `set`: `--from-file` first, then the positional keys from a prompt or stdin.
pub(super) fn read_values(
    keys: &[String],
    from_file: &[String],
) -> anyhow::Result<Vec<(String, SecretString)>> {
    let mut values = Vec::new();
    for spec in from_file {
        let (key, path) = spec.split_once('=').ok_or_else(|| {
            coded(
                ExitCode::Usage,
                format!("--from-file wants KEY=PATH, got `{spec}`"),
            )
        })?;
        let bytes = Zeroizing::new(
            std::fs::read(path)
                .with_context(|| format!("reading the value of {key} from {path}"))?,
        );
        values.push((key.to_owned(), text_value(key, bytes.to_vec())?));
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() && keys.len() > 1 {
        bail!(coded(
            ExitCode::Usage,
            "stdin holds one value: give one KEY, and the others with --from-file KEY=PATH"
        ));
    }
    for key in keys {
        secrets::file::check_key_name(key)?;
        let value = if stdin.is_terminal() {
            prompt(key)?
        } else {
            let mut bytes = Zeroizing::new(Vec::new());
            stdin
                .lock()
                .read_to_end(&mut bytes)
                .context("reading the value from stdin")?;
            let mut bytes = bytes.to_vec();
            if bytes.ends_with(b"\n") {
                bytes.pop();
                if bytes.ends_with(b"\r") {
                    bytes.pop();
                }
            }
            text_value(key, bytes)?
        };
        values.push((key.clone(), value));
    }
    if values.is_empty() {
        bail!(coded(
            ExitCode::Usage,
            "nothing to set: name a KEY (value from a prompt or stdin) or --from-file KEY=PATH"
        ));
    }
    Ok(values)
}

fn prompt(key: &str) -> anyhow::Result<SecretString> {
    let first = Zeroizing::new(rpassword::prompt_password(format!("value of {key}: "))?);
    let again = Zeroizing::new(rpassword::prompt_password(format!("again, {key}: "))?);
    if *first != *again {
        bail!(coded(
            ExitCode::Usage,
            format!("the two values typed for {key} differ")
        ));
    }
    text_value(key, first.as_bytes().to_vec())
}

/// Values are UTF-8 text (settings are strings) and never empty (an empty one is a mistake).
fn text_value(key: &str, bytes: Vec<u8>) -> anyhow::Result<SecretString> {
    let bytes = Zeroizing::new(bytes);
    if bytes.is_empty() {
        bail!(coded(
            ExitCode::Usage,
            format!("the value of {key} is empty")
        ));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        coded(
            ExitCode::Usage,
            format!("the value of {key} is not UTF-8 text"),
        )
    })?;
    Ok(SecretString::from(text))
}
