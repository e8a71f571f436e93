//! One table of the state: a RocksDB column family of typed keys and values, with the
//! changes of the commands being applied held in an overlay until they are written as
//! one batch. Reads see the overlay first, then the database, so a command sees the
//! changes of the commands applied before it in the same batch.
//!
//! A read that fails (an IO error or a value that does not decode) panics: the replica's
//! own state is unreadable, and answering "not found" instead could make it act on a
//! wrong view. The replica stops; the others go on, and a fresh replica is rebuilt from
//! them (README, "Replacing a metadata replica").

use std::collections::BTreeMap;
use std::ops::Bound;

use rocksdb::{DBIteratorWithThreadMode, Direction, IteratorMode, ReadOptions, WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::keys::Key;
use super::{decode_value, encode_value, StateDb};

/// A value of a state table (postcard-encoded).
pub trait Value: Serialize + DeserializeOwned + Clone {}
impl<T: Serialize + DeserializeOwned + Clone> Value for T {}

pub struct Table<K, V> {
    db: StateDb,
    cf: &'static str,
    /// Changes not yet written: `None` is a deletion.
    overlay: BTreeMap<K, Option<V>>,
}

/// One change taken from the overlay, with the value it replaces.
pub struct Change<K, V> {
    pub key: K,
    pub old: Option<V>,
    pub new: Option<V>,
}

impl<K: Key, V: Value> Table<K, V> {
    pub fn new(db: StateDb, cf: &'static str) -> Self {
        Table {
            db,
            cf,
            overlay: BTreeMap::new(),
        }
    }

    fn stored(&self, key: &K) -> Option<V> {
        let bytes = self
            .db
            .raw()
            .get_pinned_cf(self.db.cf(self.cf), key.encoded())
            .unwrap_or_else(|e| unreadable(self.cf, &e));
        bytes.map(|b| decode_value(self.cf, &b))
    }

    pub fn get(&self, key: &K) -> Option<V> {
        match self.overlay.get(key) {
            Some(v) => v.clone(),
            None => self.stored(key),
        }
    }

    pub fn contains_key(&self, key: &K) -> bool {
        match self.overlay.get(key) {
            Some(v) => v.is_some(),
            None => self
                .db
                .raw()
                .get_pinned_cf(self.db.cf(self.cf), key.encoded())
                .unwrap_or_else(|e| unreadable(self.cf, &e))
                .is_some(),
        }
    }

    /// The value, loaded into the overlay to be changed in place (and written back).
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if !self.overlay.contains_key(key) {
            let stored = self.stored(key)?;
            self.overlay.insert(key.clone(), Some(stored));
        }
        self.overlay.get_mut(key).and_then(Option::as_mut)
    }

    /// The value, created with `make` when absent.
    pub fn entry_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if self.get_mut(&key).is_none() {
            self.overlay.insert(key.clone(), Some(make()));
        }
        self.get_mut(&key).expect("just inserted")
    }

    pub fn insert(&mut self, key: K, value: V) {
        self.overlay.insert(key, Some(value));
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let old = self.get(key);
        if old.is_some() {
            self.overlay.insert(key.clone(), None);
        }
        old
    }

    /// Entries with keys in `(from, to)`, in key order.
    pub fn range(&self, from: Bound<K>, to: Bound<K>) -> Range<'_, K, V> {
        let mut opts = ReadOptions::default();
        if let Bound::Excluded(end) = &to {
            opts.set_iterate_upper_bound(end.encoded());
        }
        let start = match &from {
            Bound::Included(k) | Bound::Excluded(k) => Some(k.encoded()),
            Bound::Unbounded => None,
        };
        let mode = match &start {
            Some(s) => IteratorMode::From(s, Direction::Forward),
            None => IteratorMode::Start,
        };
        let stored = self
            .db
            .raw()
            .iterator_cf_opt(self.db.cf(self.cf), opts, mode);
        let pending: Vec<(K, Option<V>)> = self
            .overlay
            .range((from.as_ref(), to.as_ref()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Range {
            cf: self.cf,
            stored,
            next_stored: None,
            pending: pending.into_iter().peekable(),
            from,
            to,
            done: false,
        }
    }

    pub fn iter(&self) -> Range<'_, K, V> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }

    /// Takes the overlay's changes with the values they replace (read from the database).
    pub fn take_changes(&mut self) -> Vec<Change<K, V>> {
        std::mem::take(&mut self.overlay)
            .into_iter()
            .map(|(key, new)| Change {
                old: self.stored(&key),
                key,
                new,
            })
            .collect()
    }

    /// Adds one change to `batch`.
    pub fn write(&self, batch: &mut WriteBatch, key: &K, value: Option<&V>) {
        let cf = self.db.cf(self.cf);
        match value {
            Some(v) => batch.put_cf(cf, key.encoded(), encode_value(v)),
            None => batch.delete_cf(cf, key.encoded()),
        }
    }

    /// Writes the overlay's changes to `batch` (for tables nothing is derived from).
    pub fn flush(&mut self, batch: &mut WriteBatch) {
        for (key, value) in std::mem::take(&mut self.overlay) {
            self.write(batch, &key, value.as_ref());
        }
    }

    /// Writes the overlay's changes to `batch`, keeping `count` (the table's entries)
    /// in step.
    pub fn flush_counted(&mut self, batch: &mut WriteBatch, count: &mut u64) {
        for change in self.take_changes() {
            count_change(count, change.old.is_some(), change.new.is_some());
            self.write(batch, &change.key, change.new.as_ref());
        }
    }
}

/// Counts one entry in (absent before, present after) or out of a table.
pub fn count_change(count: &mut u64, before: bool, after: bool) {
    match (before, after) {
        (false, true) => *count += 1,
        (true, false) => *count = count.saturating_sub(1),
        _ => {}
    }
}

pub(super) fn unreadable(cf: &str, e: &dyn std::fmt::Display) -> ! {
    panic!(
        "the metadata state database cannot be read (table {cf}): {e}. This replica's state \
         is unusable: stop it, remove its data directory and add it back so it copies the \
         state from the other replicas"
    )
}

/// A table's entries in a key range: the database's merged with the overlay's.
pub struct Range<'a, K, V> {
    cf: &'static str,
    stored: DBIteratorWithThreadMode<'a, DB>,
    next_stored: Option<(K, V)>,
    pending: std::iter::Peekable<std::vec::IntoIter<(K, Option<V>)>>,
    from: Bound<K>,
    to: Bound<K>,
    done: bool,
}

impl<K: Key, V: Value> Range<'_, K, V> {
    fn pull_stored(&mut self) -> Option<(K, V)> {
        if let Some(next) = self.next_stored.take() {
            return Some(next);
        }
        loop {
            if self.done {
                return None;
            }
            let Some(item) = self.stored.next() else {
                self.done = true;
                return None;
            };
            let (k, v) = item.unwrap_or_else(|e| unreadable(self.cf, &e));
            let Some(key) = K::decode(&k) else {
                unreadable(self.cf, &format!("undecodable key {k:?}"))
            };
            if matches!(&self.from, Bound::Excluded(f) if &key == f) {
                continue;
            }
            let beyond = match &self.to {
                Bound::Included(t) => &key > t,
                Bound::Excluded(t) => &key >= t,
                Bound::Unbounded => false,
            };
            if beyond {
                self.done = true;
                return None;
            }
            return Some((key, decode_value(self.cf, &v)));
        }
    }
}

impl<K: Key, V: Value> Iterator for Range<'_, K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        loop {
            let stored = self.pull_stored();
            let take_pending = match (&stored, self.pending.peek()) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some((sk, _)), Some((pk, _))) => pk <= sk,
            };
            if !take_pending {
                return stored;
            }
            let (pk, pv) = self.pending.next().expect("peeked");
            match stored {
                // The overlay replaces or deletes the stored entry with the same key.
                Some((sk, _)) if sk == pk => {}
                other => self.next_stored = other,
            }
            if let Some(v) = pv {
                return Some((pk, v));
            }
        }
    }
}
