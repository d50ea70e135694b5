"""What a run leaves behind and shows: report.html, the web UI's LLM tab, JUnit, the verdict, CSV."""
