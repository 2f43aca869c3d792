//! A small argument reader for ROM subcommands: options anywhere,
//! positionals in order.

/// The ROM's arguments.
pub struct Args {
    items: Vec<String>,
}

impl Args {
    pub fn new(items: Vec<String>) -> Self {
        Self { items }
    }

    /// Removes `--name VALUE` (or `--name=VALUE`) and returns the value.
    pub fn option(&mut self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        if let Some(index) = self.items.iter().position(|item| item.starts_with(&prefix)) {
            return Some(self.items.remove(index)[prefix.len()..].to_owned());
        }
        let index = self.items.iter().position(|item| item == name)?;
        if index + 1 >= self.items.len() {
            return None;
        }
        self.items.remove(index);
        Some(self.items.remove(index))
    }

    /// Removes `--name VALUE` and parses it.
    pub fn parsed<T: std::str::FromStr>(&mut self, name: &str) -> anyhow::Result<Option<T>> {
        match self.option(name) {
            None => Ok(None),
            Some(value) => value
                .parse()
                .map(Some)
                .map_err(|_| anyhow::anyhow!("{name} {value:?} is not a valid value")),
        }
    }

    /// Removes `--name` and says whether it was there.
    pub fn flag(&mut self, name: &str) -> bool {
        match self.items.iter().position(|item| item == name) {
            Some(index) => {
                self.items.remove(index);
                true
            }
            None => false,
        }
    }

    /// The next positional argument.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<String> {
        (!self.items.is_empty()).then(|| self.items.remove(0))
    }

    /// The next positional argument, required.
    pub fn required(&mut self, what: &str) -> anyhow::Result<String> {
        self.next().ok_or_else(|| anyhow::anyhow!("missing {what}"))
    }

    /// Every remaining argument.
    pub fn rest(&mut self) -> Vec<String> {
        std::mem::take(&mut self.items)
    }
}
