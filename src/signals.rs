//! Unix signals become `Command`s on a channel; nothing else in the server reads
//! signals. Handlers are installed before the master announces Ready.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// TERM, INT: stop accepting, finish in-flight requests, exit 0.
    Stop,
    /// QUIT: stop now.
    Quit,
    /// HUP: re-read the config, ask the interpreter again, and replace every worker.
    Reload,
    /// A watched file changed (`--reload`): the same, without asking the interpreter
    /// again (an edit of the app's code cannot change it, and edits come in bursts).
    CodeChanged,
    /// TTIN: one worker more.
    AddWorker,
    /// TTOU: one worker less.
    RemoveWorker,
    /// USR1: reopen log files.
    ReopenLogs,
    /// USR2: start the binary on disk as a new master on our sockets (upgrade).
    Upgrade,
}

const TABLE: &[(i32, Command)] = &[
    (libc::SIGTERM, Command::Stop),
    (libc::SIGINT, Command::Stop),
    (libc::SIGQUIT, Command::Quit),
    (libc::SIGHUP, Command::Reload),
    (libc::SIGTTIN, Command::AddWorker),
    (libc::SIGTTOU, Command::RemoveWorker),
    (libc::SIGUSR1, Command::ReopenLogs),
    (libc::SIGUSR2, Command::Upgrade),
];

/// Installs the handlers now and forwards each delivery as a Command.
pub fn install(tx: mpsc::UnboundedSender<Command>) -> std::io::Result<()> {
    for &(signo, command) in TABLE {
        let mut stream = signal(SignalKind::from_raw(signo))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(command).is_err() {
                    return;
                }
            }
        });
    }
    Ok(())
}
