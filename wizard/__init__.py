"""The browser wizard. The only package that imports gradio; it never imports the training stack."""
