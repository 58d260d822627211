//! The text of Go's `encoding/json` syntax errors, which the apiserver
//! returns for a body that is not JSON (cm-create-malformed-json): the
//! first byte Go's scanner rejects, and what it was looking for.

/// Go's message for the first syntax error in `data`, or `None` when it
/// is valid JSON.
pub fn syntax_error(data: &[u8]) -> Option<String> {
    let mut p = Parser { data, pos: 0 };
    p.ws();
    if let Err(e) = p.value("looking for beginning of value") {
        return Some(e);
    }
    p.ws();
    p.peek()
        .map(|c| format!("invalid character {} after top-level value", quote(c)))
}

/// A byte as Go's scanner quotes it.
fn quote(c: u8) -> String {
    match c {
        b'\'' => "'\\''".into(),
        b'"' => "'\"'".into(),
        b'\n' => "'\\n'".into(),
        b'\r' => "'\\r'".into(),
        b'\t' => "'\\t'".into(),
        c if c.is_ascii_graphic() || c == b' ' => format!("'{}'", c as char),
        c => format!("'\\x{c:02x}'"),
    }
}

struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
}

const EOF: &str = "unexpected end of JSON input";

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn bad(&self, context: &str) -> String {
        match self.peek() {
            None => EOF.into(),
            Some(c) => format!("invalid character {} {context}", quote(c)),
        }
    }

    fn value(&mut self, context: &str) -> Result<(), String> {
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            _ => Err(self.bad(context)),
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), String> {
        for expected in word.bytes() {
            match self.peek() {
                Some(c) if c == expected => self.pos += 1,
                None => return Err(EOF.into()),
                Some(c) => {
                    return Err(format!(
                        "invalid character {} in literal {word} (expecting {})",
                        quote(c),
                        quote(expected)
                    ));
                }
            }
        }
        Ok(())
    }

    fn string(&mut self) -> Result<(), String> {
        self.pos += 1;
        loop {
            match self.peek() {
                None => return Err(EOF.into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        None => return Err(EOF.into()),
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u') => {
                            self.pos += 1;
                        }
                        Some(c) => {
                            return Err(format!(
                                "invalid character {} in string escape code",
                                quote(c)
                            ));
                        }
                    }
                }
                Some(c) if c < 0x20 => {
                    return Err(format!("invalid character {} in string literal", quote(c)));
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<(), String> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.bad("in numeric literal"));
            }
        }
        if self.peek() == Some(b'0') {
            self.pos += 1;
        } else {
            self.digits();
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.bad("after decimal point in numeric literal"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.bad("in exponent of numeric literal"));
            }
        }
        Ok(())
    }

    fn object(&mut self) -> Result<(), String> {
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.bad("looking for beginning of object key string"));
            }
            self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.bad("after object key"));
            }
            self.pos += 1;
            self.ws();
            self.value("looking for beginning of value")?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.bad("after object key:value pair")),
            }
        }
    }

    fn array(&mut self) -> Result<(), String> {
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.value("looking for beginning of value")?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.bad("after array element")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::syntax_error;

    #[test]
    fn messages_as_go_writes_them() {
        let e = |s: &str| syntax_error(s.as_bytes()).unwrap_or_default();
        assert_eq!(
            e("{not json"),
            "invalid character 'n' looking for beginning of object key string"
        );
        assert_eq!(e("{\"a\" 1}"), "invalid character '1' after object key");
        assert_eq!(
            e("{\"a\":1 2}"),
            "invalid character '2' after object key:value pair"
        );
        assert_eq!(e("[1 2]"), "invalid character '2' after array element");
        assert_eq!(e("nul"), "unexpected end of JSON input");
        assert_eq!(
            e("nux"),
            "invalid character 'x' in literal null (expecting 'l')"
        );
        assert_eq!(e("{} x"), "invalid character 'x' after top-level value");
        assert_eq!(e("1."), "unexpected end of JSON input");
        assert!(syntax_error(br#"{"a": [1, -2.5e3, "x\n", true, null]}"#).is_none());
    }
}
