//! The error file: `{"error":"<message>"}`, written whole (temp file + rename).

use std::fs;
use std::io;
use std::path::Path;

pub fn json(msg: &str) -> String {
    serde_json::json!({ "error": msg }).to_string()
}

pub fn write_file(path: &Path, msg: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    fs::write(&tmp, json(msg) + "\n")?;
    fs::rename(&tmp, path).inspect_err(|_| drop(fs::remove_file(&tmp)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_atomic_write() {
        let msg = "disk \"rw\" \"/x\": No such file or directory (os error 2)\nline two";
        assert_eq!(json("boom"), r#"{"error":"boom"}"#);
        let dir = std::env::temp_dir().join(format!("msb-vmm-err-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vmm-error.json");
        fs::write(&path, "old").unwrap();
        write_file(&path, msg).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({ "error": msg }));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1); // no temp file left
        assert!(write_file(&dir.join("missing/dir/e.json"), "x").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
