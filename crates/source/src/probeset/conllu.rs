//! CoNLL-U and CoNLL-U-Lex (STREUSLE) readers: a file into sentences of words
//! with every column kept as text.
//!
//! A file is a sequence of sentences separated by blank lines; each sentence
//! has `#` comment lines (the `# sent_id = …` and `# text = …` ones are kept
//! as fields, all of them as raw text) and one tab-separated line per token.
//! Plain CoNLL-U has 10 columns, CoNLL-U-Lex 19 (the 10 of CoNLL-U, then SMWE,
//! LEXCAT, LEXLEMMA, SS, SS2, WMWE, WCAT, WLEMMA, LEXTAG); the format is taken
//! from the first token line and every other token line of the file must have
//! the same number of columns. Multiword-token ranges (`1-2`) and empty nodes
//! (`1.1`) are skipped: a sentence is its syntactic words, whose IDs must run
//! 1, 2, … in order, and whose HEAD must be 0 or the ID of a word of the
//! sentence. Anything else is an error naming the file and the line.
//!
//! What this module does not do: it does not validate the columns it does not
//! interpret (FEATS, DEPS, MISC, the lexical columns), choose labels, or
//! tokenize; the task definitions in the parent module do that.

use std::path::{Path, PathBuf};

use super::ProbeSetError;

/// Number of columns of a plain CoNLL-U token line.
pub const CONLLU_COLUMNS: usize = 10;
/// Number of columns of a CoNLL-U-Lex (STREUSLE) token line.
pub const CONLLULEX_COLUMNS: usize = 19;

/// Which of the two formats a file is in (decided by its first token line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain CoNLL-U, 10 columns.
    Conllu,
    /// CoNLL-U-Lex (STREUSLE), 19 columns.
    ConlluLex,
}

impl Format {
    /// Number of tab-separated columns of a token line.
    pub fn columns(self) -> usize {
        match self {
            Format::Conllu => CONLLU_COLUMNS,
            Format::ConlluLex => CONLLULEX_COLUMNS,
        }
    }
}

/// A column of a token line, with its 0-based index in the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Column {
    /// 1: ID.
    Id,
    /// 2: FORM.
    Form,
    /// 3: LEMMA.
    Lemma,
    /// 4: UPOS.
    Upos,
    /// 5: XPOS.
    Xpos,
    /// 6: FEATS.
    Feats,
    /// 7: HEAD.
    Head,
    /// 8: DEPREL.
    Deprel,
    /// 9: DEPS.
    Deps,
    /// 10: MISC.
    Misc,
    /// 11: SMWE (CoNLL-U-Lex).
    Smwe,
    /// 12: LEXCAT (CoNLL-U-Lex).
    Lexcat,
    /// 13: LEXLEMMA (CoNLL-U-Lex).
    Lexlemma,
    /// 14: SS, the scene role of adpositions (CoNLL-U-Lex).
    Ss,
    /// 15: SS2, the function of adpositions (CoNLL-U-Lex).
    Ss2,
    /// 16: WMWE (CoNLL-U-Lex).
    Wmwe,
    /// 17: WCAT (CoNLL-U-Lex).
    Wcat,
    /// 18: WLEMMA (CoNLL-U-Lex).
    Wlemma,
    /// 19: LEXTAG (CoNLL-U-Lex).
    Lextag,
}

impl Column {
    /// 0-based index of the column in a token line.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The column's name as the format documents spell it.
    pub fn name(self) -> &'static str {
        const NAMES: [&str; CONLLULEX_COLUMNS] = [
            "ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC",
            "SMWE", "LEXCAT", "LEXLEMMA", "SS", "SS2", "WMWE", "WCAT", "WLEMMA", "LEXTAG",
        ];
        NAMES[self.index()]
    }

    /// Whether only CoNLL-U-Lex files have this column.
    pub fn lex_only(self) -> bool {
        self.index() >= CONLLU_COLUMNS
    }
}

/// One syntactic word of a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The word's CoNLL-U ID (1-based position in the sentence).
    pub id: u32,
    /// HEAD: 0 for the root, else the ID of the head word.
    pub head: u32,
    /// Every column of the line as written (10 or 19 entries), FORM included.
    pub columns: Vec<String>,
    /// 1-based line number of the token line in its file.
    pub line: usize,
}

impl Word {
    /// The word form (column 2).
    pub fn form(&self) -> &str {
        &self.columns[Column::Form.index()]
    }

    /// The value of `column`, or `None` when the file does not have it
    /// (a lexical column of a plain CoNLL-U file).
    pub fn get(&self, column: Column) -> Option<&str> {
        self.columns.get(column.index()).map(String::as_str)
    }
}

/// One sentence: its comments and its syntactic words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    /// The value of the `# sent_id = …` comment, if any.
    pub sent_id: Option<String>,
    /// The value of the `# text = …` comment, if any.
    pub text: Option<String>,
    /// Every comment line as written, without the leading `#` and one space.
    pub comments: Vec<String>,
    /// The words, multiword-token ranges and empty nodes left out.
    pub words: Vec<Word>,
    /// 1-based line number of the sentence's first line in its file.
    pub line: usize,
}

impl Sentence {
    /// The word forms, in order.
    pub fn forms(&self) -> Vec<String> {
        self.words.iter().map(|w| w.form().to_owned()).collect()
    }
}

/// A parsed CoNLL-U or CoNLL-U-Lex file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its format (from the first token line; CoNLL-U when there is none).
    pub format: Format,
    /// Its sentences, in file order.
    pub sentences: Vec<Sentence>,
}

/// Reads a CoNLL-U or CoNLL-U-Lex file.
pub fn read_file(path: &Path) -> Result<Document, ProbeSetError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProbeSetError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parses the text of a CoNLL-U or CoNLL-U-Lex file; `path` is only used in
/// error messages and stored in the result.
pub fn parse(path: &Path, text: &str) -> Result<Document, ProbeSetError> {
    let mut format: Option<Format> = None;
    let mut sentences = Vec::new();
    let mut current: Option<Sentence> = None;
    let malformed = |line: usize, message: String| ProbeSetError::Malformed {
        path: path.to_owned(),
        line,
        message,
    };

    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            if let Some(sentence) = current.take() {
                sentences.push(finish(path, sentence)?);
            }
            continue;
        }
        let sentence = current.get_or_insert_with(|| Sentence {
            sent_id: None,
            text: None,
            comments: Vec::new(),
            words: Vec::new(),
            line: line_no,
        });
        if let Some(comment) = line.strip_prefix('#') {
            if !sentence.words.is_empty() {
                return Err(malformed(
                    line_no,
                    "comment line after the sentence's first token line".into(),
                ));
            }
            let comment = comment.strip_prefix(' ').unwrap_or(comment);
            if let Some((key, value)) = comment.split_once('=') {
                match key.trim() {
                    "sent_id" => sentence.sent_id = Some(value.trim().to_owned()),
                    "text" => sentence.text = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
            sentence.comments.push(comment.to_owned());
            continue;
        }

        let columns: Vec<&str> = line.split('\t').collect();
        let expected = match format {
            Some(f) => f,
            None => {
                let f = match columns.len() {
                    CONLLU_COLUMNS => Format::Conllu,
                    CONLLULEX_COLUMNS => Format::ConlluLex,
                    n => {
                        return Err(malformed(
                            line_no,
                            format!(
                                "token line has {n} tab-separated columns; CoNLL-U has \
                                 {CONLLU_COLUMNS}, CoNLL-U-Lex {CONLLULEX_COLUMNS}"
                            ),
                        ));
                    }
                };
                format = Some(f);
                f
            }
        };
        if columns.len() != expected.columns() {
            return Err(malformed(
                line_no,
                format!(
                    "token line has {} tab-separated columns, the file's first token line had {}",
                    columns.len(),
                    expected.columns()
                ),
            ));
        }
        let id = columns[0];
        if id.contains('-') || id.contains('.') {
            check_range_or_empty(id).map_err(|m| malformed(line_no, m))?;
            continue;
        }
        let id: u32 = id.parse().map_err(|_| {
            malformed(
                line_no,
                format!("ID {id:?} is not a word index, a range `1-2` or an empty node `1.1`"),
            )
        })?;
        let expected_id = sentence.words.len() + 1;
        if id as usize != expected_id {
            return Err(malformed(
                line_no,
                format!(
                    "word ID {id} where {expected_id} was expected (IDs must run 1, 2, … in order)"
                ),
            ));
        }
        if columns[1].is_empty() {
            return Err(malformed(line_no, "empty FORM".into()));
        }
        let head_text = columns[Column::Head.index()];
        let head: u32 = head_text
            .parse()
            .map_err(|_| malformed(line_no, format!("HEAD {head_text:?} is not a word ID or 0")))?;
        sentence.words.push(Word {
            id,
            head,
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            line: line_no,
        });
    }
    if let Some(sentence) = current.take() {
        sentences.push(finish(path, sentence)?);
    }
    Ok(Document {
        path: path.to_owned(),
        format: format.unwrap_or(Format::Conllu),
        sentences,
    })
}

/// Checks an ID that is a multiword-token range (`3-4`) or an empty node (`3.1`).
fn check_range_or_empty(id: &str) -> Result<(), String> {
    let (a, b, what) = if let Some((a, b)) = id.split_once('-') {
        (a, b, "multiword-token range")
    } else if let Some((a, b)) = id.split_once('.') {
        (a, b, "empty node")
    } else {
        return Err(format!("ID {id:?} is malformed"));
    };
    if a.parse::<u32>().is_err() || b.parse::<u32>().is_err() {
        return Err(format!("ID {id:?} is not a valid {what}"));
    }
    Ok(())
}

/// Checks a complete sentence: it has words, and every HEAD points into it.
fn finish(path: &Path, sentence: Sentence) -> Result<Sentence, ProbeSetError> {
    if sentence.words.is_empty() {
        return Err(ProbeSetError::Malformed {
            path: path.to_owned(),
            line: sentence.line,
            message: "sentence has comment lines but no word".into(),
        });
    }
    let n = sentence.words.len();
    for word in &sentence.words {
        if word.head as usize > n {
            return Err(ProbeSetError::Malformed {
                path: path.to_owned(),
                line: word.line,
                message: format!(
                    "HEAD {} points past the sentence's last word ({n})",
                    word.head
                ),
            });
        }
    }
    Ok(sentence)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEX: &str = "# newdoc id = d1\n\
# sent_id = s-1\n\
# text = I can't go w/ Dr. X.\n\
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_\t_\tPRON\tI\t_\t_\t_\t_\t_\tO-PRON\n\
2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\n\
2\tca\tcan\tAUX\tMD\t_\t3\taux\t_\t_\t_\tAUX\tcan\t_\t_\t_\t_\t_\tO-AUX\n\
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_\t_\tV\tgo\tv.motion\t_\t_\t_\t_\tO-V-v.motion\n\
3.1\tgone\tgo\tVERB\tVB\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\n\
4\tw\twith\tADP\tIN\t_\t5\tcase\t_\t_\t_\tP\twith\tp.Ancillary\tp.Ancillary\t_\t_\t_\tO-P-p.Ancillary\n\
5\tDr.\tDr.\tPROPN\tNNP\t_\t3\tnmod:poss\t_\t_\t_\tN\tDr.\tn.PERSON\t_\t_\t_\t_\tO-N-n.PERSON\n\
\n\
# sent_id = s-2\n\
1\tOK\tok\tINTJ\tUH\t_\t0\troot\t_\t_\t_\tINTJ\tok\t_\t_\t_\t_\t_\tO-INTJ\n";

    #[test]
    fn reads_conllulex_skipping_ranges_and_empty_nodes() {
        let doc = parse(Path::new("x.conllulex"), LEX).expect("parses");
        assert_eq!(doc.format, Format::ConlluLex);
        assert_eq!(doc.sentences.len(), 2);
        let s = &doc.sentences[0];
        assert_eq!(s.sent_id.as_deref(), Some("s-1"));
        assert_eq!(s.text.as_deref(), Some("I can't go w/ Dr. X."));
        assert_eq!(s.comments[0], "newdoc id = d1");
        assert_eq!(s.forms(), ["I", "ca", "go", "w", "Dr."]);
        assert_eq!(s.words[3].get(Column::Ss), Some("p.Ancillary"));
        assert_eq!(s.words[3].get(Column::Ss2), Some("p.Ancillary"));
        assert_eq!(s.words[4].get(Column::Deprel), Some("nmod:poss"));
        assert_eq!(s.words[4].head, 3);
        assert_eq!(s.words[4].line, 10);
        assert_eq!(s.line, 1);
        assert_eq!(doc.sentences[1].line, 12);
        assert_eq!(doc.sentences[1].words[0].head, 0);
    }

    #[test]
    fn reads_plain_conllu() {
        let text = "1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n2\t!\t!\tPUNCT\t.\t_\t1\tpunct\t_\t_\n";
        let doc = parse(Path::new("a.conllu"), text).expect("parses");
        assert_eq!(doc.format, Format::Conllu);
        assert_eq!(doc.sentences[0].sent_id, None);
        assert_eq!(doc.sentences[0].words[1].get(Column::Ss), None);
        assert_eq!(doc.sentences[0].words[1].get(Column::Upos), Some("PUNCT"));
    }

    fn error_of(text: &str) -> String {
        parse(Path::new("bad.conllu"), text)
            .expect_err("must fail")
            .to_string()
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let wrong_count =
            "1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n2\t!\t!\tPUNCT\t.\t_\t1\tpunct\t_\n";
        let e = error_of(wrong_count);
        assert!(e.starts_with("bad.conllu:2:"), "{e}");
        assert!(e.contains("9 tab-separated columns"), "{e}");

        let e = error_of("1\tHi\thi\tINTJ\n");
        assert!(
            e.starts_with("bad.conllu:1:") && e.contains("4 tab-separated"),
            "{e}"
        );

        let bad_id =
            "1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\nx\t!\t!\tPUNCT\t.\t_\t1\tpunct\t_\t_\n";
        let e = error_of(bad_id);
        assert!(e.starts_with("bad.conllu:2:") && e.contains("\"x\""), "{e}");

        let gap = "1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n3\t!\t!\tPUNCT\t.\t_\t1\tpunct\t_\t_\n";
        let e = error_of(gap);
        assert!(
            e.starts_with("bad.conllu:2:") && e.contains("2 was expected"),
            "{e}"
        );

        let head =
            "\n\n1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n2\t!\t!\tPUNCT\t.\t_\t7\tpunct\t_\t_\n";
        let e = error_of(head);
        assert!(
            e.starts_with("bad.conllu:4:") && e.contains("HEAD 7"),
            "{e}"
        );

        let head = "1\tHi\thi\tINTJ\tUH\t_\t_\troot\t_\t_\n";
        assert!(error_of(head).contains("HEAD \"_\""));

        let range = "1-x\tHi\t_\t_\t_\t_\t_\t_\t_\t_\n";
        assert!(error_of(range).contains("multiword-token range"));

        let late_comment = "1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n# x = y\n";
        assert!(error_of(late_comment).starts_with("bad.conllu:2:"));
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.conllu");
        let e = read_file(&path).expect_err("absent").to_string();
        assert!(e.contains("absent.conllu"), "{e}");
    }

    #[test]
    fn crlf_and_trailing_blank_lines() {
        let text = "# sent_id = a\r\n1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\r\n\r\n\r\n";
        let doc = parse(Path::new("w.conllu"), text).expect("parses");
        assert_eq!(doc.sentences.len(), 1);
        assert_eq!(doc.sentences[0].sent_id.as_deref(), Some("a"));
        assert_eq!(doc.sentences[0].words[0].columns[9], "_");
    }
}
