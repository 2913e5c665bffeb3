# JSON for the demo scripts without jq, sourced by login.sh and recover.sh.

# json_string S: S as a JSON string, quotes, backslashes and control
# characters escaped (a password with " or \ stays that password).
json_string() {
  local s=$1 i c
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  for i in $(seq 1 31); do
    case $i in 9 | 10 | 13) continue ;; esac
    c=$(printf "\\$(printf '%03o' "$i")")
    s=${s//"$c"/$(printf '\\u%04x' "$i")}
  done
  printf '"%s"' "$s"
}

# json_value KEY < JSON: the raw JSON value of the first "KEY" in JSON (an
# object or array whole, a string with its quotes); fails when there is none.
json_value() {
  tr '\n' ' ' | awk -v key="$1" '{
    i = index($0, "\"" key "\"")
    if (!i) exit 1
    s = substr($0, i + length(key) + 2)
    sub(/^[ \t]*:[ \t]*/, "", s)
    c = substr(s, 1, 1)
    if (c != "{" && c != "[" && c != "\"") {
      match(s, /^[^,}\] ]*/)
      print substr(s, 1, RLENGTH)
      exit 0
    }
    depth = 0; instr = 0
    for (j = 1; j <= length(s); j++) {
      ch = substr(s, j, 1)
      if (instr) {
        if (ch == "\\") j++
        else if (ch == "\"") { instr = 0; if (depth == 0) { print substr(s, 1, j); exit 0 } }
        continue
      }
      if (ch == "\"") instr = 1
      else if (ch == "{" || ch == "[") depth++
      else if (ch == "}" || ch == "]") { depth--; if (depth == 0) { print substr(s, 1, j); exit 0 } }
    }
    exit 1
  }'
}

# json_errors < JSON: the text of each error message in a Kratos flow
# ({"id":…,"text":"…","type":"error"}), one a line.
json_errors() {
  tr '\n' ' ' | grep -o '"text": *"\([^"\\]\|\\.\)*", *"type": *"error"' | sed 's/^"text": *"//; s/", *"type": *"error"$//'
}
