//! Listing: the objects under a prefix in byte order of their keys, page by page, with
//! keys optionally rolled up into common prefixes at a delimiter.

use super::{Ino, InodeKind, Namespace, NamespaceError, ObjectEntry};

/// One page of a listing: objects and (with a delimiter) common prefixes, each in byte
/// order; `truncated` when more entries follow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectEntry>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
}

/// Where a listing starts and how it rolls keys up.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListQuery<'a> {
    pub prefix: &'a str,
    /// Only entries sorting after this.
    pub start_after: &'a str,
    /// Also skip entries starting with this (resuming after a common prefix).
    pub skip_prefix: &'a str,
    pub delimiter: &'a str,
    pub limit: usize,
}

impl ListQuery<'_> {
    fn wants(&self, item: &str) -> bool {
        item > self.start_after
            && (self.skip_prefix.is_empty() || !item.starts_with(self.skip_prefix))
    }

    /// Whether some key starting with `dir` (a directory's key prefix) may be wanted.
    fn may_want_below(&self, dir: &str) -> bool {
        let all_before = dir < self.start_after && !self.start_after.starts_with(dir);
        let all_skipped = !self.skip_prefix.is_empty() && dir.starts_with(self.skip_prefix);
        !all_before && !all_skipped
    }
}

enum ListItem {
    Object(ObjectEntry),
    Prefix(String),
}

impl Namespace {
    /// One page of the objects of `bucket` matching `query`, in byte order of the whole
    /// key. With a delimiter, keys containing it after the prefix are rolled up into
    /// common prefixes (for "/" these are exactly the directories below the prefix).
    pub fn list(&self, bucket: &str, query: &ListQuery) -> Result<ListPage, NamespaceError> {
        let mut dir = self.bucket(bucket)?.ino;
        // Descend through the complete directory components of the prefix.
        let (dir_part, name_prefix) = match query.prefix.rfind('/') {
            Some(i) => (&query.prefix[..i], &query.prefix[i + 1..]),
            None => ("", query.prefix),
        };
        let mut base = String::new();
        if !dir_part.is_empty() {
            for part in dir_part.split('/') {
                match self.child(dir, part) {
                    Some(ino) if matches!(self.entry_inode(ino).kind, InodeKind::Dir { .. }) => {
                        dir = ino;
                        base.push_str(part);
                        base.push('/');
                    }
                    _ => return Ok(ListPage::default()),
                }
            }
        }
        let mut walk = Walk {
            ns: self,
            query,
            last_prefix: None,
            out: Vec::new(),
        };
        walk.dir(dir, &base, name_prefix, true);
        let mut items = walk.out;
        let truncated = items.len() > query.limit;
        items.truncate(query.limit);
        let mut page = ListPage {
            truncated,
            ..ListPage::default()
        };
        for item in items {
            match item {
                ListItem::Object(o) => page.objects.push(o),
                ListItem::Prefix(p) => page.common_prefixes.push(p),
            }
        }
        Ok(page)
    }
}

/// A listing in progress: visits directories in key order until it has one entry more
/// than the query's limit (which tells that the page is truncated).
struct Walk<'a> {
    ns: &'a Namespace,
    query: &'a ListQuery<'a>,
    last_prefix: Option<String>,
    out: Vec<ListItem>,
}

impl Walk<'_> {
    fn full(&self) -> bool {
        self.out.len() > self.query.limit
    }

    fn dir(&mut self, dir: Ino, base: &str, name_prefix: &str, top: bool) {
        let ns = self.ns;
        // A directory `d` holds keys `d/...`, so it sorts as "d/" among its siblings.
        let mut entries: Vec<(String, Ino, bool)> = ns
            .entries_from(dir, std::ops::Bound::Included(name_prefix))
            .take_while(|(name, _)| name.starts_with(name_prefix))
            .map(|(name, ino)| {
                let is_dir = matches!(ns.entry_inode(ino).kind, InodeKind::Dir { .. });
                let sort_key = if is_dir {
                    format!("{base}{name}/")
                } else {
                    format!("{base}{name}")
                };
                (sort_key, ino, is_dir)
            })
            .collect();
        entries.sort();
        for (full, ino, is_dir) in entries {
            if self.full() {
                return;
            }
            if is_dir {
                if top && self.query.delimiter == "/" {
                    if self.query.wants(&full) {
                        self.out.push(ListItem::Prefix(full));
                    }
                } else if self.query.may_want_below(&full) {
                    self.dir(ino, &full, "", false);
                }
            } else if self.query.wants(&full) {
                self.file(full, ino);
            }
        }
    }

    fn file(&mut self, key: String, ino: Ino) {
        let query = self.query;
        if !query.delimiter.is_empty() {
            let rest = &key[query.prefix.len()..];
            if let Some(i) = rest.find(query.delimiter) {
                let prefix = key[..query.prefix.len() + i + query.delimiter.len()].to_string();
                if self.last_prefix.as_deref() != Some(prefix.as_str()) && query.wants(&prefix) {
                    self.last_prefix = Some(prefix.clone());
                    self.out.push(ListItem::Prefix(prefix));
                }
                return;
            }
        }
        let inode = self.ns.entry_inode(ino);
        if let InodeKind::File { size, .. } = inode.kind {
            self.out.push(ListItem::Object(ObjectEntry {
                key,
                size,
                generation: inode.generation,
                mtime: inode.mtime_ns / super::objects::NS_PER_SEC,
            }));
        }
    }
}
