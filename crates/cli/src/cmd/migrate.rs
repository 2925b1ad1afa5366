//! `blackbox migrate`: a data directory's log moved between its embedded store and a
//! PostgreSQL database (`blackbox_ledger::relocate`).

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Result, bail};
use blackbox_ledger::datadir::DataDir;
use blackbox_ledger::relocate::{Direction, move_store};

use crate::Outcome;
use crate::cli::TextOrJson;
use crate::output::{n, progress};

pub fn run(from: &str, to: &str, format: TextOrJson) -> Result<Outcome> {
    let pg = blackbox_store_pg::is_postgres_url;
    let (dir, url, direction) = match (pg(from), pg(to)) {
        (false, true) => (from, to, Direction::ToPostgres),
        (true, false) => (to, from, Direction::ToEmbedded),
        (true, true) => bail!(
            "--from and --to are both databases: one side must be the data directory (its embedded store)"
        ),
        (false, false) => bail!(
            "--from and --to are both directories: one side must be a postgres:// URL (moving a log between two data directories is copying the directory)"
        ),
    };
    let store = match direction {
        Direction::ToPostgres => None,
        Direction::ToEmbedded => Some(url.to_owned()),
    };
    let dir = DataDir::new(PathBuf::from(dir)).with_store(store);
    let bar = Mutex::new((String::new(), progress(0, "")));
    let moved = move_store(&dir, url, direction, &|stage, done, total| {
        let mut b = bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if b.0 != stage {
            b.1.finish_and_clear();
            *b = (stage.to_owned(), progress(total, stage));
        }
        b.1.set_position(done);
    })?;
    bar.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .1
        .finish_and_clear();
    let c = &moved.copied;
    let ok = moved.report.ok();
    // Webhook deliveries not yet made stay in the outbox the log left (they are not moved).
    let left_pending = if ok {
        use blackbox_webhooks::Outbox as _;
        let counts = match direction {
            Direction::ToPostgres => {
                let file = dir.root().join(blackbox_webhooks::OUTBOX_FILE);
                if file.exists() {
                    Some(blackbox_webhooks::SqliteOutbox::open(&file)?.counts()?)
                } else {
                    None
                }
            }
            Direction::ToEmbedded => Some(blackbox_webhooks::PgOutbox::open(url)?.counts()?),
        };
        counts.map_or(0, |c| c.pending + c.dead)
    } else {
        0
    };
    // The API tokens follow the log: into the database (copied from tokens.db once, when its
    // table is empty), or back into tokens.db.
    let tokens = if ok {
        let file = dir.root().join("tokens.db");
        Some(match direction {
            Direction::ToPostgres => {
                let mut t = blackbox_server::tokens::PgTokens::open(url, Some(&file))?;
                blackbox_server::tokens::TokenStore::records(&mut t)?.len()
            }
            Direction::ToEmbedded => blackbox_server::tokens::copy_tokens_to_file(url, &file)?,
        })
    } else {
        None
    };
    match format {
        TextOrJson::Json => println!(
            "{}",
            serde_json::json!({
                "ok": ok,
                "direction": match direction {
                    Direction::ToPostgres => "to_postgres",
                    Direction::ToEmbedded => "to_embedded",
                },
                "destination": moved.destination,
                "log_name": c.log_name,
                "chains": c.chains,
                "entries": c.entries,
                "written": c.written,
                "resumed": c.resumed,
                "checkpoints": c.checkpoints,
                "tokens": tokens,
                "webhook_deliveries_left_behind": left_pending,
                "kept": moved.kept,
                "verify": blackbox_ledger::report::report_json(&moved.report),
            })
        ),
        TextOrJson::Text => {
            if ok {
                println!(
                    "OK — {} entries of {} chain(s) of the log `{}` copied to {}{}, compared byte for byte and verified",
                    n(c.entries),
                    c.chains,
                    c.log_name,
                    moved.destination,
                    if c.resumed {
                        format!(" (resumed: {} written by this run)", n(c.written))
                    } else {
                        String::new()
                    }
                );
                if let Some(n) = tokens {
                    println!("{n} API token(s) kept with the log");
                }
                if left_pending > 0 {
                    let place = match direction {
                        Direction::ToPostgres => dir
                            .root()
                            .join(blackbox_webhooks::OUTBOX_FILE)
                            .display()
                            .to_string(),
                        Direction::ToEmbedded => {
                            format!("the database's outbox ({})", blackbox_store_pg::redact(url))
                        }
                    };
                    println!(
                        "warning: {left_pending} webhook deliveries not yet made (pending or dead) stay in {place} and are not sent from the new outbox (deliver them before moving a log, or re-send them by hand)"
                    );
                }
                match direction {
                    Direction::ToPostgres => {
                        println!(
                            "{} now keeps its log in that database: run every command on it with --store URL (or BLACKBOX_STORE)",
                            dir.root().display()
                        );
                        println!(
                            "the embedded store was put aside in {} (delete it once you no longer need it)",
                            moved.kept.display()
                        );
                    }
                    Direction::ToEmbedded => {
                        println!(
                            "{} now keeps its log in its embedded store again: run commands without --store",
                            dir.root().display()
                        );
                        println!(
                            "the database was left as it was; its marker was put aside as {}",
                            moved.kept.display()
                        );
                    }
                }
            } else {
                println!(
                    "FAILED — the copy at {} does not verify; the data directory was not switched over",
                    moved.destination
                );
                print!("{}", super::verify::report_text(&moved.report, false));
            }
        }
    }
    Ok(if ok {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}
