//! `--check-config`'s output: the effective configuration as a config file that
//! loads back to the same settings. It is the file's own schema (`FileConfig`)
//! serialized, with the flags laid over it and every default filled in, so no third
//! copy of the keys is written by hand.

use super::Settings;

impl Settings {
    /// The config as TOML, for `--check-config`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(i) = &self.python.interpreter {
            out += &format!(
                "# [python] interpreter chosen by {} (a path, not canonicalised)\n",
                i.chosen_by
            );
        }
        out += &toml::to_string(&self.effective).expect("the config serializes as TOML");
        out
    }
}
